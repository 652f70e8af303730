"""Linear probe on frozen, cached features: scikit-learn's multinomial logistic regression (lbfgs).

Why scikit-learn and not a torch SGD loop: on cached features the problem is convex and small
enough for a second-order-ish solver that needs no learning rate, epochs or augmentation, so the
only free choice left is the L2 strength ``C``, and lbfgs gives the same answer on every machine.
(The papers' ImageNet linear probes train a BN+linear layer with SGD and augmentation for 100
epochs; that is a training run, not an evaluation of cached features.)

Protocol: features L2-normalised, then standardised (a scaler fit on the training images); ``C``
is chosen from :data:`C_GRID` by top-1 on a seeded stratified split of the *train* images
(``holdout`` of them; never the validation images), then the classifier is refit on all train
images with that ``C`` and scored on val (top-1 / top-5, percent).
"""

from __future__ import annotations

import numpy as np

from objssl.errors import DataError

__all__ = ["C_GRID", "linear_probe"]

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _top_k(proba: np.ndarray, classes: np.ndarray, labels: np.ndarray, k: int) -> float:
    order = np.argsort(-proba, axis=1)[:, : min(k, proba.shape[1])]
    return 100.0 * float(np.mean((classes[order] == labels[:, None]).any(axis=1)))


def _model(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    return make_pipeline(Normalizer(), StandardScaler(),
                         LogisticRegression(C=c, solver="lbfgs", max_iter=1000, random_state=seed))


def linear_probe(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, val_labels: np.ndarray, *,
                 c_grid: tuple[float, ...] = C_GRID, holdout: float = 0.2, seed: int = 0) -> dict:
    """Fit and score the probe; returns metrics plus the chosen ``C`` and each candidate's held-out top-1."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(train_labels)
    if np.count_nonzero(counts) < 2:
        raise DataError("the linear probe needs train images of at least 2 classes")
    if counts[counts > 0].min() < 2:
        raise DataError("the linear probe needs at least 2 train images per class (one to fit, one to choose C)")
    fit_x, hold_x, fit_y, hold_y = train_test_split(train, train_labels, test_size=holdout, random_state=seed,
                                                    stratify=train_labels)
    scores = {}
    for c in c_grid:
        model = _model(c, seed).fit(fit_x, fit_y)
        scores[c] = 100.0 * float(np.mean(model.predict(hold_x) == hold_y))
    best = max(c_grid, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    model = _model(best, seed).fit(train, train_labels)
    proba = model.predict_proba(val)
    classes = model.classes_
    return {"metrics": {"top1": _top_k(proba, classes, val_labels, 1), "top5": _top_k(proba, classes, val_labels, 5)},
            "C": best, "heldout_top1": {str(c): s for c, s in scores.items()},
            "classifier": "sklearn LogisticRegression(lbfgs, multinomial) on L2-normalised, standardised features"}
