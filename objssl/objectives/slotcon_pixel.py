"""``slotcon_pixel``: SlotCon's grouping term (Wen et al., NeurIPS 2022): DINO-style self-distillation of
the prototype scores of the pixels two views share (the teacher's centred), symmetrised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from objssl.losses.pixel_distill import pixel_distill_loss, update_center_
from objssl.objectives.slotcon_heads import SlotConHeads
from objssl.ops import align_to_overlap
from objssl.registry import OBJECTIVES

__all__ = ["SlotConPixel"]


@OBJECTIVES.register("slotcon_pixel")
class SlotConPixel(SlotConHeads):
    """Args: the shared SlotCon head arguments, student_temp (0.1), center_momentum (0.9),
    gather_distributed (average the centre over every process).

    State: ``center [1, K]`` (``objectives.slotcon_pixel.center``), an EMA of the unaligned teacher scores.
    """

    name = "slotcon_pixel"
    loss_key = "loss_group"

    def __init__(self, *, num_prototypes: int = 256, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 head_norm: str = "bn", teacher_temp: float = 0.07, student_temp: float = 0.1,
                 center_momentum: float = 0.9, gather_distributed: bool = True) -> None:
        super().__init__(num_prototypes=num_prototypes, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim,
                         head_norm=head_norm, teacher_temp=teacher_temp)
        self.student_temp, self.center_momentum, self.gather_distributed = student_temp, center_momentum, gather_distributed
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        size = tuple(batch["views"][0].shape[-2:])
        boxes = (batch["overlap"][:, 0, 1], batch["overlap"][:, 1, 0])
        flips = (batch["flips"][:, 0], batch["flips"][:, 1])
        # a sample whose views share nothing has no aligned pixels: it is left out of the pixel loss
        valid = batch["overlap_valid"][:, 0, 1] & batch["overlap_valid"][:, 1, 0]
        s_q1, s_q2 = (self.scores(feats, "online", v)[1] for v in (0, 1))
        s_k1, s_k2 = (self.scores(feats, "target", v)[1] for v in (0, 1))

        def aligned(scores: Tensor, view: int) -> Tensor:
            return align_to_overlap(scores[valid], boxes[view][valid], flips[view][valid], size)

        def distill(student: Tensor, teacher: Tensor) -> Tensor:
            return pixel_distill_loss(student, teacher, self.center, self.student_temp, self.teacher_temp)

        if bool(valid.any()):
            loss = distill(aligned(s_q1, 0), aligned(s_k2, 1)) + distill(aligned(s_q2, 1), aligned(s_k1, 0))
        else:
            loss = (s_q1.sum() + s_q2.sum()) * 0.0
        # the centre follows the unaligned teacher scores (as the official code), skipped if non-finite
        update_center_(self.center, torch.cat([s_k1, s_k2]), self.center_momentum, self.gather_distributed)
        return {"loss": loss, "invalid_overlaps": (~valid).sum().float()}
