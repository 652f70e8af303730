"""Checkpoints as the trainer uses them: which one to resume from, loading it into a run, and never
writing one that holds a non-finite tensor."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from objssl import checkpoint as ckpt_io
from objssl.errors import UserError

__all__ = ["find_resume_checkpoint", "load_model_state", "nonfinite_tensors"]

log = logging.getLogger("objssl.train")


def find_resume_checkpoint(ckpt_dir: str) -> str | None:
    """The newest checkpoint in ``ckpt_dir`` that verifies (:func:`objssl.checkpoint.find_resumable_checkpoint`);
    newer bad ones are reported and passed over, never silently."""
    path, bad = ckpt_io.find_resumable_checkpoint(ckpt_dir)
    for bad_path, reason in bad:
        log.warning("checkpoint %s is unusable (%s); resuming from the previous good one", bad_path, reason)
    return path


def load_model_state(method: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load a checkpoint's model state strictly; a mismatch is one line naming the first keys."""
    own = method.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} with other shapes, e.g. {k} {list(state[k].shape)} in the checkpoint "
                         f"vs {list(own[k].shape)} in this config ({', '.join(shapes[:3])})")
        if missing:
            parts.append(f"{len(missing)} missing from the checkpoint ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} not in this model ({', '.join(unexpected[:3])})")
        raise UserError(f"cannot resume from {path}: its model does not match the config (other head sizes or "
                        f"method settings?): {'; '.join(parts)} keys")
    method.load_state_dict(state)


def nonfinite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in ``obj`` (nested dicts/lists) holding NaN or inf."""
    bad: list[str] = []
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            bad.append(prefix or "tensor")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            bad.extend(nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad.extend(nonfinite_tensors(v, f"{prefix}[{i}]"))
    elif isinstance(obj, float) and not math.isfinite(obj):
        bad.append(prefix)
    return bad
