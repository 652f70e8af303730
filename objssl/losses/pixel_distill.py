"""DINO-style pixel self-distillation with an EMA centre (SlotCon's grouping loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objssl.distributed import all_reduce_mean, all_reduce_min
from objssl.registry import LOSSES

__all__ = ["pixel_distill_loss", "update_center_", "PixelDistillLoss"]


def pixel_distill_loss(
    student: Tensor, teacher: Tensor, center: Tensor, student_temp: float = 0.1, teacher_temp: float = 0.07
) -> Tensor:
    """Cross-entropy of the centred, sharpened teacher distribution against the student's, per pixel.

    ``mean over B·H·W of  -sum_k softmax((t - c) / τ_t)_k · log_softmax(s / τ_s)_k``

    Args:
        student: ``[B, K, H, W]`` student scores (aligned).
        teacher: ``[B, K, H, W]`` teacher scores (aligned; no gradient flows into them).
        center: ``[1, K]`` or ``[K]``.

    Returns:
        scalar loss (computed in float32).
    """
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(f"pixel_distill_loss: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                         "must both be [B, K, H, W]")
    s = F.log_softmax(student.float() / student_temp, dim=1)
    t = F.softmax((teacher.detach().float() - center.float().view(1, -1, 1, 1)) / teacher_temp, dim=1)
    return -(t * s).sum(dim=1).mean()


@torch.no_grad()
def update_center_(center: Tensor, teacher_scores: Tensor, momentum: float, gather_distributed: bool = True) -> bool:
    """EMA of ``center [1, K]`` (in place) towards the mean teacher score of every pixel.

    With ``gather_distributed`` the batch mean is averaged over every process (all-reduce), and the
    update is skipped, returning False, when any process saw a non-finite value (a bad fp16 step must
    not poison the centre).
    """
    batch_center = teacher_scores.float().mean(dim=(0, 2, 3)).view(1, -1)
    if gather_distributed:
        # every process contributes the same number of pixels, so the mean of means is the mean
        batch_center = all_reduce_mean(batch_center)
    finite_here = torch.isfinite(batch_center).all().float().view(1)
    finite = (all_reduce_min(finite_here) if gather_distributed else finite_here).item() > 0
    if finite:
        center.mul_(momentum).add_(batch_center.to(center.dtype), alpha=1 - momentum)
    return finite


@LOSSES.register("pixel_distill")
class PixelDistillLoss(nn.Module):
    """:func:`pixel_distill_loss` with the centre as a buffer, updated by EMA from teacher scores.

    Args:
        num_prototypes: K.
        student_temp, teacher_temp: τ_s = 0.1, τ_t = 0.07 (SlotCon).
        center_momentum: 0.9.

    ``loss(student [B,K,H,W], teacher [B,K,H,W]) -> scalar``; ``update_center(teacher_scores [N,K,H,W])``
    averages over every pixel of every process (all-reduce; ``gather_distributed=False``: this
    process only) and skips the update, returning False,
    when any process saw a non-finite value (a bad fp16 step must not poison the centre).
    """

    def __init__(
        self, num_prototypes: int, student_temp: float = 0.1, teacher_temp: float = 0.07, center_momentum: float = 0.9,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.student_temp, self.teacher_temp, self.center_momentum = student_temp, teacher_temp, center_momentum
        self.gather_distributed = gather_distributed
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return pixel_distill_loss(student, teacher, self.center, self.student_temp, self.teacher_temp)

    def update_center(self, teacher_scores: Tensor) -> bool:
        return update_center_(self.center, teacher_scores, self.center_momentum, self.gather_distributed)
