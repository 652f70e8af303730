import os
import pickle

import numpy as np
import pytest

from objssl.correspondence import format as fmt
from objssl.correspondence.store import CorrespondenceStore
from objssl.errors import DataError

IMAGES = [f"/data/{i}.jpg" for i in range(5)]
BOXES = [
    [[0, 0, 100, 100], [10, 10, 200, 150]],
    [[1, 1, 99, 99]],
    [],
    [[5, 5, 300, 300]],
    [[0, 0, 96, 96], [1, 2, 300, 400], [4, 5, 600, 700]],
]
NEIGHBOURS = [[1, 2], [0, 2], [0, 1], [4, 0], [3, 0]]


def write_folder(folder):
    fmt.write_knn(folder, IMAGES, np.array(NEIGHBOURS), np.full((5, 2), 0.5))
    boxes = [np.array(b, dtype=np.float32).reshape(-1, 4) for b in BOXES]
    fmt.write_box_shard(folder, 0, 0, boxes[:3], np.zeros((3, 8)))
    fmt.write_box_shard(folder, 1, 3, boxes[3:], np.zeros((4, 8)))
    none = (np.zeros((0, 2)), np.zeros(0))
    fmt.write_pair_shard(folder, 0, 0, 2, [
        [(np.array([[1, 0]]), np.array([0.5])), none],
        [(np.array([[0, 1]]), np.array([0.25])), none],
        [none, none],
    ])
    fmt.write_pair_shard(folder, 1, 3, 2, [
        [(np.array([[0, 2]]), np.array([0.75])), none],
        [none, (np.array([[2, 0], [0, 0]]), np.array([0.125, 0.375]))],
    ])
    fmt.write_meta(folder, k=2, num_images=5, shards=[(0, 3), (3, 5)])


def test_store_reads_boxes_neighbours_and_pairs_across_shards(tmp_path):
    write_folder(str(tmp_path))
    store = CorrespondenceStore.open(str(tmp_path))
    assert len(store) == 5 and store.k == 2 and store.images == IMAGES
    for i, b in enumerate(BOXES):
        got = store.boxes(i)
        assert got.dtype == np.int16 and got.tolist() == b or (not b and got.shape == (0, 4))
    assert store.neighbours(3).dtype == np.int32 and store.neighbours(3).tolist() == [4, 0]
    q, n, s = store.pairs(4, 1)  # image 4 (shard 1), neighbour 0 (shard 0)
    assert q.tolist() == [[4, 5, 600, 700], [0, 0, 96, 96]]
    assert n.tolist() == [[0, 0, 100, 100], [0, 0, 100, 100]]
    assert s.dtype == np.float32 and s.tolist() == [0.125, 0.375]
    q, n, s = store.pairs(3, 0)
    assert q.tolist() == [[5, 5, 300, 300]] and n.tolist() == [[4, 5, 600, 700]]
    assert store.pairs(2, 0)[0].shape == (0, 4)
    assert store.index_of("/data/3.jpg") == 3
    with pytest.raises(KeyError):
        store.index_of("/data/9.jpg")
    with pytest.raises(IndexError):
        store.pairs(0, 2)
    again = pickle.loads(pickle.dumps(store))
    assert again.pairs(1, 0)[2].tolist() == [0.25]


def test_store_names_a_corrupt_or_missing_file(tmp_path):
    write_folder(str(tmp_path))
    target = os.path.join(str(tmp_path), "correspondence", "pairs-00001.npy")
    with open(target, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x7f")
    with pytest.raises(DataError, match="pairs-00001.npy is corrupt"):
        CorrespondenceStore.open(str(tmp_path))
    os.remove(os.path.join(str(tmp_path), "correspondence", "meta.json"))
    with pytest.raises(DataError, match="meta.json is missing"):
        CorrespondenceStore.open(str(tmp_path))
    os.remove(os.path.join(str(tmp_path), "knn", "meta.json"))
    with pytest.raises(DataError, match="knn/meta.json is missing"):
        CorrespondenceStore.open(str(tmp_path))


def test_shard_validity_follows_checksums(tmp_path):
    write_folder(str(tmp_path))
    folder = str(tmp_path)
    assert fmt.box_shard_valid(folder, 0, 0, 3) and fmt.pair_shard_valid(folder, 1, 3, 5)
    assert not fmt.box_shard_valid(folder, 0, 0, 4)  # another image range
    emb = os.path.join(folder, "correspondence", fmt.embedding_file(1))
    with open(emb, "ab") as f:
        f.write(b"x")
    assert not fmt.box_shard_valid(folder, 1, 3, 5)
    assert fmt.box_shard_valid(folder, 1, 3, 5, embeddings=False)
