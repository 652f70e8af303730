import torch
from PIL import Image

from objssl.data.dataset import ImageDataset, seeded
from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform


def _images(tmp_path, n=4):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (64 + i, 48), (i * 40, 100, 200)).save(p)
        paths.append(str(p))
    return paths


def test_seeded_sample_is_reproducible_and_leaves_global_rng_alone(tmp_path):
    ds = ImageDataset(_images(tmp_path), MultiViewTransform.from_augmentations(BYOL_VIEWS))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = ds[(1, 1234)]
    assert torch.equal(torch.get_rng_state(), state)
    b = ds[(1, 1234)]
    c = ds[(1, 999)]
    assert torch.equal(a["views"][0], b["views"][0]) and torch.equal(a["views"][1], b["views"][1])
    assert not torch.equal(a["views"][0], c["views"][0])
    assert a["index"] == 1 and a["skipped"] == 0


def test_bad_file_replaced_by_next_and_counted(tmp_path, caplog):
    paths = _images(tmp_path, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    ds = ImageDataset([str(bad), str(tiny)] + paths, lambda img: {"size": img.size}, min_side=16)
    s = ds[0]
    assert s["index"] == 2 and s["skipped"] == 2 and s["size"] == (64, 48)
    assert "bad.jpg" in caplog.text and "tiny.png" in caplog.text


def test_transform_with_wants_meta_gets_index_and_path(tmp_path):
    paths = _images(tmp_path, 2)

    class T:
        wants_meta = True

        def __call__(self, image, meta):
            return {"meta": meta}

    assert ImageDataset(paths, T())[1]["meta"] == {"index": 1, "path": paths[1]}


def test_seeded_context_restores_python_random():
    import random

    random.seed(7)
    expected = random.random()
    random.seed(7)
    with seeded(1):
        random.random()
    assert random.random() == expected
