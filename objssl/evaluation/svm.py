"""ORL's VOC07 SVM protocol (``ORL:benchmarks/svm_tools/``), on cached features.

Facts (the files named are ORL's; the label files are made by the FAIR benchmark's
``extra_scripts/create_voc_data_files.py``, which ORL's ``tools/prepare_data/prepare_voc07_cls.sh``
runs):

* targets are coded ``1`` present, ``0`` absent, ``-1`` ignore (VOC's ``0`` = *difficult*);
* features are L2-normalised with ``x / (‖x‖ + 1e-5)`` (``svm_helper.normalize_features``);
* one ``LinearSVC(C, class_weight={1: 2, -1: 1}, intercept_scaling=1, penalty="l2",
  loss="squared_hinge", tol=1e-4, dual=True, max_iter=2000)`` per class, one-vs-rest;
* costs: the script passes ``1,10,100`` and ``svm_helper.parse_cost_list`` *appends*
  ``0.5**4 … 0.5**19`` (:data:`ORL_COSTS`); objssl's default is the three (:data:`DEFAULT_COSTS`);
* full SVM (``train_svm_kfold.py``): the training labels turn ``0`` into ``-1`` and leave ignore
  (``-1``) as it is, so *difficult images train as negatives*; each class's cost is the one with the
  best mean ``cross_val_score(cv=3, scoring="average_precision")`` on trainval (``test_svm.py``
  ``get_chosen_costs``: argmax per class); the SVM is then fit on all of trainval;
* test (``test_svm.py``): ignore images are left out; AP is ``svm_helper.get_precision_recall`` →
  ``calculate_ap``: the area under the precision envelope (VOC2010+ style, all points, not
  VOC07's 11-point AP): :func:`voc_ap`; mAP is the plain mean over classes.

``cost_selection="heldout"`` (default) is ORL's own 3-fold rule above: no test image is seen.
``"test"`` picks the single cost with the best test mAP (the rule ORL's low-shot aggregate uses,
see :mod:`objssl.evaluation.low_shot`), for reproducing numbers chosen that way.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np

from objssl.errors import DataError

__all__ = ["DEFAULT_COSTS", "ORL_COSTS", "normalise", "unconverged_fits", "make_svm", "voc_ap", "class_ap", "mean_ap", "full_svm"]

DEFAULT_COSTS = (1.0, 10.0, 100.0)
ORL_COSTS = DEFAULT_COSTS + tuple(0.5**n for n in range(4, 20))


def normalise(x: np.ndarray) -> np.ndarray:
    """ORL's ``normalize_features``: ``x / (‖x‖₂ + 1e-5)`` per row, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1) + 1e-5)[:, None]


@contextlib.contextmanager
def unconverged_fits() -> Iterator[list]:
    """Collects liblinear's ConvergenceWarnings (max_iter=2000 is ORL's; small C-heavy problems hit it)
    instead of printing each: ``len(the list)`` is reported in the result."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        found: list = []
        yield found
    found.extend(w for w in caught if issubclass(w.category, ConvergenceWarning))


def make_svm(cost: float):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, penalty="l2", loss="squared_hinge",
                     tol=1e-4, dual=True, max_iter=2000)


def voc_ap(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision envelope of the ranking by ``scores`` (ORL's ``calculate_ap``).

    Ties are broken by position (a stable sort of ``-scores``). NaN when there is no positive.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.cumsum(positive[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / n_pos
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision at any higher recall
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def class_ap(target_column: np.ndarray, scores: np.ndarray) -> float:
    """AP of one class on test targets (``-1`` ignore left out, as ``test_svm.py`` does)."""
    keep = target_column != -1
    return voc_ap(target_column[keep] == 1, scores[keep])


def mean_ap(targets: np.ndarray, scores: np.ndarray) -> tuple[float, list[float]]:
    """(mAP in percent over the classes with a test positive, AP per class in percent, NaN if none)."""
    aps = [100.0 * class_ap(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]
    finite = [a for a in aps if a == a]
    return (float(np.mean(finite)) if finite else float("nan")), aps


def _train_labels(column: np.ndarray) -> np.ndarray:
    """ORL's full-SVM training labels: present → +1, absent and ignore → −1."""
    return np.where(column == 1, 1, -1).astype(np.int32)


def _check_trainable(targets: np.ndarray, classes: list[str]) -> None:
    for c, name in enumerate(classes):
        n_pos = int((targets[:, c] == 1).sum())
        if n_pos < 3 or int((targets[:, c] != 1).sum()) < 3:
            raise DataError(f"class {name!r} has {n_pos} positive trainval images: the SVM's 3-fold cost "
                            "selection needs at least 3 positives and 3 negatives per class")


def full_svm(train_x: np.ndarray, train_targets: np.ndarray, test_x: np.ndarray, test_targets: np.ndarray, *,
             classes: list[str], costs: tuple[float, ...] = DEFAULT_COSTS, cost_selection: str = "heldout") -> dict:
    """Train one SVM per class on trainval, score test; returns metrics and the costs used."""
    with unconverged_fits() as unconverged:
        out = _full_svm(normalise(train_x), train_targets, normalise(test_x), test_targets, classes, costs,
                        cost_selection)
    return {**out, "unconverged_fits": len(unconverged)}


def _full_svm(train_x, train_targets, test_x, test_targets, classes, costs, cost_selection) -> dict:
    from sklearn.model_selection import cross_val_score

    n_classes = train_targets.shape[1]
    scores = {}  # cost → [N_test, C] decision values
    chosen: list[float] = []
    if cost_selection == "heldout":
        _check_trainable(train_targets, classes)
        test_scores = np.zeros((len(test_x), n_classes))
        cv_ap = {}
        for c in range(n_classes):
            y = _train_labels(train_targets[:, c])
            cv = {cost: float(cross_val_score(make_svm(cost), train_x, y, cv=3, scoring="average_precision").mean())
                  for cost in costs}
            best = max(costs, key=lambda k: cv[k])  # first best in list order, like np.argmax
            chosen.append(best)
            cv_ap[classes[c]] = {str(k): 100.0 * v for k, v in cv.items()}
            test_scores[:, c] = make_svm(best).fit(train_x, y).decision_function(test_x)
        m, aps = mean_ap(test_targets, test_scores)
        rule = "heldout: per class, the cost with the best mean 3-fold cross-validated AP on trainval (ORL's rule)"
        extra = {"crossval_AP": cv_ap}
    elif cost_selection == "test":
        per_cost = {}
        for cost in costs:
            s = np.zeros((len(test_x), n_classes))
            for c in range(n_classes):
                s[:, c] = make_svm(cost).fit(train_x, _train_labels(train_targets[:, c])).decision_function(test_x)
            scores[cost] = s
            per_cost[cost] = mean_ap(test_targets, s)
        best = max(costs, key=lambda k: per_cost[k][0])
        chosen = [best] * n_classes
        m, aps = per_cost[best]
        rule = "test: the one cost with the best test mAP (chosen on the test set)"
        extra = {"test_mAP_per_cost": {str(k): v[0] for k, v in per_cost.items()}}
    else:
        raise ValueError(f"cost_selection={cost_selection!r}: choose heldout or test")
    return {"metrics": {"mAP": m}, "AP": dict(zip(classes, aps)), "chosen_C": dict(zip(classes, chosen)),
            "cost_selection": rule, "costs": list(costs), **extra}
