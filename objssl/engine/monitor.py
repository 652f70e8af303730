"""The kNN monitor of a pretraining run: ``train.eval_every=N`` with ``eval.knn.train`` / ``eval.knn.val``.

Every N optimizer steps (on the main process) the EMA target's backbone — the one the official
methods export — is put in eval mode, features of both image folders are extracted (not cached:
the weights change), and the weighted kNN of :mod:`objssl.evaluation.knn` gives top-1 / top-5,
which the trainer adds to that step's record: ``eval/knn_top1`` and ``eval/knn_top5`` in
``metrics.jsonl`` and TensorBoard, and a line in ``log.txt``.

The eval leaves the run exactly as it was: the backbone's mode and weights are untouched
(an eval-mode forward updates no BatchNorm statistics), and every RNG state the training draws
from (torch, CUDA, numpy, python) is saved before and restored after, so a run with monitoring
resumes to the same numbers as one without.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from objssl.checkpoint import rng_state, set_rng_state
from objssl.config import eval_section
from objssl.evaluation.datasets import read_image_folder
from objssl.evaluation.features import extract_features
from objssl.evaluation.knn import knn_accuracy
from objssl.evaluation.transforms import centre_crop_transform

__all__ = ["KnnMonitor", "monitored_backbone"]

log = logging.getLogger("objssl.train")


def monitored_backbone(method: nn.Module) -> nn.Module:
    """The EMA target's backbone, or the online one for a method without a target."""
    target = getattr(method, "target", None)
    if target is not None and "backbone" in target:
        return target["backbone"]
    return method.online["backbone"]


class KnnMonitor:
    """Runs the kNN eval every ``train.eval_every`` steps (build it with :meth:`from_config`)."""

    def __init__(self, cfg: dict[str, Any], device: torch.device) -> None:
        knn = eval_section(cfg)["knn"]
        self.every = int(cfg["train"]["eval_every"])
        self.k, self.temperature = int(knn["k"]), float(knn["temperature"])
        self.image_size, self.batch_size = int(knn["image_size"]), int(knn["batch_size"])
        self.num_workers = int(knn["num_workers"])
        self.train, self.val = read_image_folder(knn["train"]), read_image_folder(knn["val"])
        self.transform = centre_crop_transform(self.image_size)
        self.device = device

    @classmethod
    def from_config(cls, cfg: dict[str, Any], device: torch.device) -> KnnMonitor | None:
        """A monitor when ``train.eval_every`` is set (the config is validated already), else None."""
        if cfg["train"].get("eval_every") is None:
            return None
        return cls(cfg, device)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def evaluate(self, backbone: nn.Module, step: int) -> dict[str, float]:
        """``{"eval/knn_top1": %, "eval/knn_top5": %}`` of ``backbone`` now; RNG states are restored."""
        saved = rng_state()
        start = time.perf_counter()
        try:
            feats = [extract_features(backbone, d.paths, self.transform, image_size=self.image_size, kind="pooled",
                                      batch_size=self.batch_size, num_workers=self.num_workers, device=self.device,
                                      progress=False, desc=f"eval {name}")
                     for name, d in (("train", self.train), ("val", self.val))]
            (ftr, fva), (train, val) = feats, (self.train.subset(feats[0].kept), self.val.subset(feats[1].kept))
            metrics = knn_accuracy(ftr.values, torch.as_tensor(train.labels), fva.values, torch.as_tensor(val.labels),
                                   num_classes=len(train.classes), k=min(self.k, len(train)),
                                   temperature=self.temperature)
        finally:
            set_rng_state(saved)
        log.info("step %d: kNN eval (EMA backbone, k=%d, T=%g, %d train / %d val images, %.1f s): "
                 "top-1 %.2f top-5 %.2f", step, self.k, self.temperature, len(train), len(val),
                 time.perf_counter() - start, metrics["top1"], metrics["top5"])
        return {"eval/knn_top1": metrics["top1"], "eval/knn_top5": metrics["top5"]}
