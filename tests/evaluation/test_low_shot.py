import numpy as np
import pytest

from objssl.evaluation.low_shot import LOW_SHOT_K, low_shot_svm, sample_low_shot
from objssl.evaluation.svm import class_ap, make_svm, normalise


def _targets(rng, n=200, classes=4):
    t = (rng.random((n, classes)) < 0.35).astype(np.int8)
    t[rng.random((n, classes)) < 0.05] = -1  # some difficult
    return t


def test_sample_counts_per_class_never_difficult_and_seeded(rng):
    t = _targets(rng)
    k = 4
    samples = [sample_low_shot(t, k, s, seed=3) for s in range(5)]
    for s in samples:
        for c in range(t.shape[1]):
            assert (s[:, c] == 1).sum() == k
            assert (s[:, c] == 0).sum() == (t.shape[1] - 1) * k
            assert (t[s[:, c] == 1, c] == 1).all() and (t[s[:, c] == 0, c] == 0).all()
    assert len({s.tobytes() for s in samples}) == 5  # 5 distinct samples
    assert np.array_equal(samples[2], sample_low_shot(t, k, 2, seed=3))  # repeatable
    assert not np.array_equal(samples[2], sample_low_shot(t, k, 2, seed=4))
    pool = np.arange(0, 200, 2)
    drawn = sample_low_shot(t, 2, 0, pool=pool)
    assert ((drawn != -1).any(axis=1).nonzero()[0] % 2 == 0).all()  # only from the pool
    assert LOW_SHOT_K == (1, 2, 4, 8, 16, 32, 64, 96)


def test_low_shot_svm_with_test_selection_matches_direct_fits(rng):
    t = _targets(rng, 120, 3)
    x = rng.normal(size=(120, 6)) + t.clip(0) @ rng.normal(size=(3, 6)) * 2
    tt = _targets(rng, 40, 3)
    xt = rng.normal(size=(40, 6)) + tt.clip(0) @ rng.normal(size=(3, 6)) * 2
    costs = (0.5, 5.0)
    got = low_shot_svm(x, t, xt, tt, classes=["a", "b", "c"], ks=(1, 2, 64), costs=costs, cost_selection="test",
                       num_samples=5, seed=1)
    assert "64" in got["skipped_k"] and set(got["metrics"]["mAP"]) == {"1", "2"}
    xn, xtn = normalise(x), normalise(xt)
    for k in (1, 2):
        means = {}
        for cost in costs:
            maps = []
            for s in range(5):
                sample = sample_low_shot(t, k, s, seed=1)
                aps = []
                for c in range(3):
                    keep = sample[:, c] != -1
                    svm = make_svm(cost).fit(xn[keep], np.where(sample[keep, c] == 1, 1, -1))
                    aps.append(class_ap(tt[:, c], svm.decision_function(xtn)))
                maps.append(100 * np.mean(aps))
            means[cost] = np.mean(maps)
        assert got["metrics"]["mAP"][str(k)] == pytest.approx(max(means.values()))
        assert got["per_k"][str(k)]["C"] == max(costs, key=lambda c: means[c])
    held = low_shot_svm(x, t, xt, tt, classes=["a", "b", "c"], ks=(1,), costs=costs, seed=1)
    assert held["cost_selection"].startswith("heldout") and 0 <= held["metrics"]["mAP"]["1"] <= 100
