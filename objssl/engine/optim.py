"""Optimizers (from ``timm.optim``) and the per-iteration warmup + cosine schedule (timm)."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

from objssl.errors import ConfigError

__all__ = ["scaled_lr", "build_optimizer", "build_scheduler", "warmup_steps_for"]


def scaled_lr(optim_cfg: dict[str, Any], global_batch_size: int) -> float:
    """``lr × batch / 256`` (the linear scaling rule) unless ``lr_scaling: none``."""
    lr = float(optim_cfg["lr"])
    return lr * global_batch_size / 256 if optim_cfg["lr_scaling"] == "linear" else lr


def build_optimizer(model: nn.Module, optim_cfg: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """An optimizer from ``timm.optim`` over the parameters that require gradients.

    With ``exclude_1d`` (default), 1-d parameters (biases, norm weights) get no weight decay; timm's
    LARS then also skips its trust-ratio adaptation for them (SoCo/SlotCon/BYOL practice).
    """
    kwargs = dict(optim_cfg.get("kwargs") or {})
    name = str(optim_cfg["name"]).lower()
    if name in ("sgd", "momentum", "lars", "larc", "nlars", "nesterov"):
        kwargs.setdefault("momentum", optim_cfg["momentum"])
    try:
        return create_optimizer_v2(
            model,
            opt=name,
            lr=lr,
            weight_decay=float(optim_cfg["weight_decay"]),
            filter_bias_and_bn=bool(optim_cfg["exclude_1d"]),
            **kwargs,
        )
    except (AssertionError, ValueError, TypeError) as exc:
        raise ConfigError(f"optim.name={optim_cfg['name']!r}: timm cannot build it: {exc}") from exc


def warmup_steps_for(optim_cfg: dict[str, Any], steps_per_epoch: int, total_steps: int) -> int:
    if optim_cfg.get("warmup_steps") is not None:
        w = int(optim_cfg["warmup_steps"])
    else:
        w = int(math.ceil(float(optim_cfg["warmup_epochs"]) * steps_per_epoch))
    # a short run still gets a cosine part
    return max(0, min(w, total_steps - 1))


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim_cfg: dict[str, Any], lr: float, total_steps: int, warmup: int
) -> CosineLRScheduler:
    """Linear warmup from ``lr × warmup_start_ratio`` for ``warmup`` steps, then cosine to ``min_lr``.

    Stepped per iteration with ``scheduler.step_update(step)``.
    """
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, total_steps - warmup),
        lr_min=float(optim_cfg["min_lr"]),
        warmup_t=warmup,
        warmup_lr_init=lr * float(optim_cfg["warmup_start_ratio"]),
        warmup_prefix=True,
        t_in_epochs=False,
    )
