import shutil

import numpy as np
import pytest
import torch

from objssl.correspondence.features import extract_features
from objssl.correspondence.knn import drop_self, knn_search

pytestmark = pytest.mark.faiss


def brute_force(features, k):
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    sim = x @ x.T
    sim.fill_diagonal_(float("-inf"))
    scores, idx = sim.topk(k, dim=1)
    return idx.numpy(), scores.numpy()


def test_knn_equals_brute_force_on_real_photos(tiny_backbone, demo_paths, photo_folder):
    paths = demo_paths + sorted(str(p) for p in photo_folder.glob("*.jpg"))
    feats, ok = extract_features(tiny_backbone.forward_pooled, paths, batch_size=8, resize=40, crop=32)
    assert ok.all() and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    idx, scores = knn_search(feats, 5)
    ref_idx, ref_scores = brute_force(feats, 5)
    assert idx.dtype == np.int32 and scores.dtype == np.float32 and idx.shape == (len(paths), 5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # same neighbours wherever the scores are not tied
    gaps = np.diff(ref_scores, axis=1)
    untied = np.all(np.abs(gaps) > 1e-5, axis=1)
    assert untied.sum() >= len(paths) // 2
    np.testing.assert_array_equal(idx[untied], ref_idx[untied])
    assert not (idx == np.arange(len(paths))[:, None]).any()


def test_duplicates_drop_the_query_itself_wherever_it_ranks(tiny_backbone, demo_paths, tmp_path):
    paths = []
    for i, p in enumerate(demo_paths[:5]):
        paths.append(str(tmp_path / f"{i}.jpg"))
        shutil.copy(p, paths[-1])
    paths.append(str(tmp_path / "copy_of_0.jpg"))
    shutil.copy(demo_paths[0], paths[-1])
    feats, _ = extract_features(tiny_backbone.forward_pooled, paths, batch_size=8, resize=40, crop=32)
    assert np.array_equal(feats[0], feats[5])
    idx, scores = knn_search(feats, 2)
    # image 0 and its copy are each other's first neighbour (cosine 1), never themselves
    assert idx[0, 0] == 5 and idx[5, 0] == 0
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert not (idx == np.arange(len(paths))[:, None]).any()


def test_drop_self_when_self_is_not_first_or_absent():
    idx = np.array([[5, 0, 2], [3, 4, 2]])
    sc = np.array([[1.0, 1.0, 0.5], [0.9, 0.8, 0.7]], dtype=np.float32)
    out_i, out_s = drop_self(idx, sc)
    assert out_i.tolist() == [[5, 2], [3, 4]]  # row 0 drops its own index 0; row 1 lacks 1: drops the last
    assert out_s.tolist() == [[1.0, 0.5], [pytest.approx(0.9), pytest.approx(0.8)]]


def test_k_must_leave_a_neighbour():
    from objssl.errors import ConfigError

    with pytest.raises(ConfigError, match="knn_k=4"):
        knn_search(np.eye(4, dtype=np.float32), 4)
