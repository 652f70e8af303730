"""Momentum (EMA) teachers and the cosine momentum schedule shared by every method."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["cosine_momentum", "make_momentum_copy", "ema_update"]


def cosine_momentum(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    """``final - (final - base) * (cos(pi * step / total) + 1) / 2``: base at step 0, final at the end.

    The schedule of BYOL, ORL, SoCo, UniVIP and SlotCon (0.99 → 1).
    """
    if total_steps <= 0:
        return final
    t = min(max(step, 0), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * t) + 1) / 2


def make_momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (no gradients), built eagerly from the current weights.

    Built when the method is built, never lazily on a first forward: lazily created layers miss
    the optimizer, DDP and checkpoints (the UniVIP reproduction's projector bug).
    """
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``t ← m·t + (1 - m)·s`` for every parameter.

    Buffers (BatchNorm running statistics) are not averaged: the teacher runs in train mode and
    keeps its own, as in the official BYOL/ORL/SoCo code. Both modules must have the same structure
    (the teacher was made by :func:`make_momentum_copy` from the same module).
    """
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("ema_update: teacher and student have different parameter lists")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
