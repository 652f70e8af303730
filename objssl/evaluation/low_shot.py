"""ORL's low-shot VOC07 SVM (``ORL:tools/prepare_data/create_voc_low_shot_challenge_samples.py``,
``ORL:benchmarks/svm_tools/{train,test}_svm_low_shot.py``, ``aggregate_low_shot_svm_stats.py``).

Facts:

* for each k in ``1, 2, 4, 8, 16, 32, 64, 96`` and each of **5 independent samples**, per class:
  k positives (target ``1``) and ``(classes − 1)·k`` negatives (target ``0``, never an ignore
  image) drawn without replacement from trainval; every other image is ``-1`` (left out) for that
  class (``sample_symbol``). ORL draws with Python's unseeded ``random``; objssl draws from
  ``numpy.random.default_rng((seed, sample, k))``, so a run is repeatable and each (sample, k) is
  independent of the others;
* one SVM per class and cost on the sampled images only (``get_cls_feats_labels``: ``-1`` left
  out, ``0`` → ``-1``); test AP and mAP as the full SVM (:mod:`objssl.evaluation.svm`);
* ORL's aggregate picks, per k, the cost with the best **mean test mAP over the 5 samples** and
  reports that mean: the cost is chosen on the test set (``cost_selection="test"``).

``cost_selection="heldout"`` (objssl's default) first sets aside a seeded ``holdout`` fraction of
trainval; samples are drawn from the rest, and per k the cost with the best mean mAP on the
held-out images is used; its mean test mAP is reported. A k that some class cannot supply
(too few positives or negatives) is skipped and named in the result.
"""

from __future__ import annotations

import logging

import numpy as np

from objssl.errors import DataError
from objssl.evaluation.svm import DEFAULT_COSTS, make_svm, mean_ap, normalise, unconverged_fits

__all__ = ["LOW_SHOT_K", "NUM_SAMPLES", "sample_low_shot", "low_shot_svm"]

log = logging.getLogger("objssl.eval")

LOW_SHOT_K = (1, 2, 4, 8, 16, 32, 64, 96)
NUM_SAMPLES = 5


def _shortage(targets: np.ndarray, k: int, pool: np.ndarray, classes: list[str]) -> str | None:
    n_classes = targets.shape[1]
    for c in range(n_classes):
        n_pos = int((targets[pool, c] == 1).sum())
        n_neg = int((targets[pool, c] == 0).sum())
        if n_pos < k or n_neg < (n_classes - 1) * k:
            return (f"class {classes[c]!r} has {n_pos} positives and {n_neg} negatives to draw from; "
                    f"k={k} needs {k} and {(n_classes - 1) * k}")
    return None


def sample_low_shot(targets: np.ndarray, k: int, sample: int, *, seed: int = 0,
                    pool: np.ndarray | None = None) -> np.ndarray:
    """One low-shot sample: a copy of ``targets`` where, per class, only ``k`` drawn positives and
    ``(classes-1)·k`` drawn negatives (from the rows ``pool``, default all) keep their label; the
    rest are ``-1``."""
    n, n_classes = targets.shape
    pool = np.arange(n) if pool is None else np.asarray(pool)
    rng = np.random.default_rng((seed, sample, k))
    out = np.full_like(targets, -1)
    for c in range(n_classes):
        column = targets[pool, c]
        positives = pool[column == 1]
        negatives = pool[column == 0]
        if len(positives) < k or len(negatives) < (n_classes - 1) * k:
            raise DataError(f"low-shot k={k}: class {c} has {len(positives)} positives and {len(negatives)} "
                            f"negatives, it needs {k} and {(n_classes - 1) * k}")
        out[rng.choice(positives, size=k, replace=False), c] = 1
        out[rng.choice(negatives, size=(n_classes - 1) * k, replace=False), c] = 0
    return out


def _fit_scores(train_x: np.ndarray, sample: np.ndarray, cost: float, eval_sets: list[np.ndarray]) -> list[np.ndarray]:
    outs = [np.zeros((len(x), sample.shape[1])) for x in eval_sets]
    for c in range(sample.shape[1]):
        keep = sample[:, c] != -1
        y = np.where(sample[keep, c] == 1, 1, -1).astype(np.int32)
        svm = make_svm(cost).fit(train_x[keep], y)
        for out, x in zip(outs, eval_sets):
            out[:, c] = svm.decision_function(x)
    return outs


def low_shot_svm(train_x: np.ndarray, train_targets: np.ndarray, test_x: np.ndarray, test_targets: np.ndarray, *,
                 classes: list[str], ks: tuple[int, ...] = LOW_SHOT_K, num_samples: int = NUM_SAMPLES,
                 costs: tuple[float, ...] = DEFAULT_COSTS, cost_selection: str = "heldout", seed: int = 0,
                 holdout: float = 0.2) -> dict:
    """Low-shot SVM mAP per k (mean over the samples, at the cost the rule picks)."""
    if cost_selection not in ("heldout", "test"):
        raise ValueError(f"cost_selection={cost_selection!r}: choose heldout or test")
    with unconverged_fits() as unconverged:
        out = _low_shot(train_x, train_targets, test_x, test_targets, classes, ks, num_samples, costs,
                        cost_selection, seed, holdout)
    return {**out, "unconverged_fits": len(unconverged)}


def _low_shot(train_x, train_targets, test_x, test_targets, classes, ks, num_samples, costs, cost_selection, seed,
              holdout) -> dict:
    train_x, test_x = normalise(train_x), normalise(test_x)
    n = len(train_x)
    if cost_selection == "heldout":
        order = np.random.default_rng((seed, 7919)).permutation(n)
        n_hold = max(1, int(round(holdout * n)))
        hold, pool = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    else:
        hold, pool = None, np.arange(n)
    results, skipped = {}, {}
    for k in ks:
        short = _shortage(train_targets, k, pool, classes)
        if short is not None:
            skipped[str(k)] = short
            log.warning("low-shot k=%d skipped: %s", k, short)
            continue
        test_map = {cost: [] for cost in costs}
        hold_map = {cost: [] for cost in costs}
        for s in range(num_samples):
            sample = sample_low_shot(train_targets, k, s, seed=seed, pool=pool)
            for cost in costs:
                sets = [test_x] if hold is None else [test_x, train_x[hold]]
                outs = _fit_scores(train_x, sample, cost, sets)
                test_map[cost].append(mean_ap(test_targets, outs[0])[0])
                if hold is not None:
                    hold_map[cost].append(mean_ap(train_targets[hold], outs[1])[0])
        basis = test_map if cost_selection == "test" else hold_map
        best = max(costs, key=lambda cost: np.mean(basis[cost]))
        values = np.asarray(test_map[best])
        results[str(k)] = {"mAP": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                           "max": float(values.max()), "C": best, "per_sample": values.tolist()}
    if not results:
        raise DataError(f"low-shot SVM: no k in {list(ks)} can be sampled from trainval ({next(iter(skipped.values()))})")
    rule = ("test: per k, the cost with the best mean test mAP over the samples (ORL's aggregate rule)"
            if cost_selection == "test" else
            f"heldout: per k, the cost with the best mean mAP on a seeded {holdout:.0%} of trainval kept out "
            "of the samples")
    return {"metrics": {"mAP": {k: r["mAP"] for k, r in results.items()}}, "per_k": results,
            "skipped_k": skipped, "cost_selection": rule, "costs": list(costs), "num_samples": num_samples,
            "seed": seed}
