import numpy as np
import pytest
import torch

from objssl.errors import DataError
from objssl.evaluation.knn import knn_accuracy, knn_class_scores, top_k_accuracy


def _brute_force(train, labels, query, num_classes, k, t):
    """Per query: cosine to every train vector, the k largest, exp(s/T) summed per class."""
    out = np.zeros((len(query), num_classes))
    for i, q in enumerate(query):
        sims = [float(np.dot(q, x) / (np.linalg.norm(q) * np.linalg.norm(x))) for x in train]
        for j in sorted(range(len(train)), key=lambda j: -sims[j])[:k]:
            out[i, labels[j]] += np.exp(sims[j] / t)
    return out


def test_knn_scores_match_brute_force(rng):
    train = rng.normal(size=(40, 8))
    labels = rng.integers(0, 4, size=40)
    query = rng.normal(size=(9, 8))
    got = knn_class_scores(torch.tensor(train), torch.tensor(labels), torch.tensor(query), num_classes=4, k=7,
                           temperature=0.1, chunk=4)
    np.testing.assert_allclose(got.double().numpy(), _brute_force(train, labels, query, 4, 7, 0.1), rtol=1e-4)


def test_top_k_accuracy_and_knn_accuracy(rng):
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    acc = top_k_accuracy(scores, torch.tensor([1, 2, 0]), ks=(1, 2, 5))
    assert acc == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(200 / 3), "top5": 100.0}
    # well separated classes: every val point's neighbours are of its class
    centres = rng.normal(size=(3, 16)) * 10
    train = np.concatenate([c + rng.normal(size=(10, 16)) for c in centres])
    val = np.concatenate([c + rng.normal(size=(4, 16)) for c in centres])
    out = knn_accuracy(torch.tensor(train), torch.arange(3).repeat_interleave(10), torch.tensor(val),
                       torch.arange(3).repeat_interleave(4), num_classes=3, k=5)
    assert out == {"top1": 100.0, "top5": 100.0}


def test_fewer_train_images_than_k_is_an_error():
    with pytest.raises(DataError, match="k=20 needs at least 20 train images, there are 5"):
        knn_class_scores(torch.randn(5, 4), torch.zeros(5), torch.randn(2, 4), num_classes=1, k=20)
