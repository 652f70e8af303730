import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.svm import LinearSVC

from objssl.errors import DataError
from objssl.evaluation.svm import ORL_COSTS, class_ap, full_svm, mean_ap, normalise, voc_ap


def _envelope_ap(positive, scores):
    """AP as the sum, over each recall level reached, of the best precision at that recall or above."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    hits, points = 0, []
    for rank, i in enumerate(order, 1):
        hits += positive[i]
        points.append((hits / sum(positive), hits / rank))
    ap, last_recall = 0.0, 0.0
    for recall in sorted({r for r, _ in points}):
        if recall > last_recall:
            ap += (recall - last_recall) * max(p for r, p in points if r >= recall)
            last_recall = recall
    return ap


def test_voc_ap_is_the_area_under_the_precision_envelope(rng):
    assert voc_ap(np.array([1, 1, 0, 0]), np.array([4.0, 3, 2, 1])) == 1.0
    assert voc_ap(np.array([0, 1]), np.array([2.0, 1])) == 0.5
    for _ in range(5):
        positive = rng.random(30) < 0.3
        positive[0] = True
        scores = rng.normal(size=30)
        assert voc_ap(positive, scores) == pytest.approx(_envelope_ap(list(positive.astype(int)), list(scores)))
    assert np.isnan(voc_ap(np.zeros(3, bool), np.ones(3)))


def test_ignore_images_are_left_out_of_test_ap():
    scores = np.array([3.0, 2.0, 1.0])
    assert class_ap(np.array([0, -1, 1]), scores) == 0.5  # the ignored image ranked between does not count
    assert class_ap(np.array([0, 0, 1]), scores) == pytest.approx(1 / 3)
    m, aps = mean_ap(np.array([[1, 0], [0, 0]]), np.array([[1.0, 0], [0, 1]]))
    assert np.isnan(aps[1]) and m == 100.0  # a class without a test positive has no AP and is left out


def _features(rng, n, classes=3, dim=12):
    centres = rng.normal(size=(classes, dim)) * 2
    targets = np.zeros((n, classes), dtype=np.int8)
    x = rng.normal(size=(n, dim))
    for i in range(n):
        present = rng.random(classes) < 0.4
        present[i % classes] = True
        targets[i] = present
        x[i] += centres[present].sum(0)
    return x, targets


def _svm(c):
    return LinearSVC(C=c, class_weight={1: 2, -1: 1}, penalty="l2", loss="squared_hinge", dual=True, tol=1e-4,
                     max_iter=2000)


def _ap(test_t, s):
    return np.mean([class_ap(test_t[:, c], s[:, c]) for c in range(test_t.shape[1])]) * 100


def test_full_svm_matches_scikit_learn_run_directly(rng):
    x, t = _features(rng, 60)
    t[5, 1] = t[9, 2] = -1  # difficult trainval images: ORL trains them as negatives
    xt, tt = _features(rng, 30)
    tt[3, 0] = -1
    costs = (0.1, 1.0, 10.0)
    got = full_svm(x, t, xt, tt, classes=["a", "b", "c"], costs=costs)
    xn, xtn = normalise(x), normalise(xt)
    want_scores = np.zeros(tt.shape)
    for c in range(3):
        y = np.where(t[:, c] == 1, 1, -1)
        cv = [cross_val_score(_svm(k), xn, y, cv=3, scoring="average_precision").mean() for k in costs]
        best = costs[int(np.argmax(cv))]
        assert got["chosen_C"]["abc"[c]] == best
        want_scores[:, c] = _svm(best).fit(xn, y).decision_function(xtn)
    assert got["metrics"]["mAP"] == pytest.approx(_ap(tt, want_scores))
    assert got["cost_selection"].startswith("heldout")

    by_test = full_svm(x, t, xt, tt, classes=["a", "b", "c"], costs=costs, cost_selection="test")
    per_cost = {}
    for k in costs:
        s = np.stack([_svm(k).fit(xn, np.where(t[:, c] == 1, 1, -1)).decision_function(xtn) for c in range(3)], 1)
        per_cost[k] = _ap(tt, s)
    assert by_test["metrics"]["mAP"] == pytest.approx(max(per_cost.values()))
    assert by_test["cost_selection"].startswith("test")


def test_normalise_and_orl_costs():
    x = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(normalise(x), x / (5 + 1e-5))
    assert len(ORL_COSTS) == 19 and ORL_COSTS[:3] == (1.0, 10.0, 100.0) and ORL_COSTS[-1] == 0.5**19


def test_too_few_positives_for_the_3_fold_rule(rng):
    x, t = _features(rng, 20)
    t[:, 2] = 0
    t[0, 2] = 1
    with pytest.raises(DataError, match="class 'c' has 1 positive"):
        full_svm(x, t, x, t, classes=["a", "b", "c"])
