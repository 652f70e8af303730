"""SlotCon (Wen et al., NeurIPS 2022): semantic grouping by learnable prototypes + slot contrast.

online: backbone (dense map) → dense projector (1x1 convs →4096→4096→256) → grouping (K prototypes)
        → slots → slot predictor (→4096→4096→256)
target: EMA of backbone, projector and prototypes
loss:   w · pixel self-distillation of aligned prototype scores (centred teacher)
        + (1 − w) · InfoNCE of slots present in both views, w = 0.5; both symmetrised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from objssl.data.views import BoxAwareViews
from objssl.heads import MLPHead, MLPHead2d, SemanticGrouping
from objssl.losses import PixelDistillLoss, SlotInfoNCELoss, present_slots
from objssl.methods.base import Method
from objssl.ops import align_to_overlap
from objssl.registry import METHODS

__all__ = ["SlotCon"]


@METHODS.register("slotcon")
class SlotCon(Method):
    """SlotCon over any backbone with a dense map (the deepest of ``backbone.feature_info``).

    Args:
        backbone: an objssl backbone; CNNs give a stride-32 map, ViTs their patch tokens as a map.
        num_prototypes: K (256 for COCO, 2048 for ImageNet).
        proj_hidden_dim, proj_dim: projector / predictor sizes (4096, 256).
        head_norm: norm in the heads (``bn``; SyncBN under multi-GPU DDP).
        student_temp, teacher_temp: 0.1 and 0.07 (the teacher's is also the grouping temperature).
        center_momentum: 0.9. group_loss_weight: w = 0.5. slot_temp: 0.2.
        image_size: side of both views (224).

    Batch (from :class:`objssl.data.views.BoxAwareViews` preset ``slotcon``): ``views`` (two
    ``[B, 3, S, S]``), ``overlap [B, 2, 2, 4]``, ``overlap_valid [B, 2, 2]``, ``flips [B, 2]``.
    """

    name = "slotcon"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_prototypes: int = 256,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        head_norm: str = "bn",
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        center_momentum: float = 0.9,
        group_loss_weight: float = 0.5,
        slot_temp: float = 0.2,
        image_size: int = 224,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__(base_momentum, final_momentum)
        if not 0 <= group_loss_weight <= 1:
            raise ValueError(f"slotcon: group_loss_weight must be in [0, 1], got {group_loss_weight}")
        self.image_size, self.group_loss_weight = image_size, group_loss_weight
        dense = backbone.feature_info[-1]
        self.map_name = dense.name
        self.online["backbone"] = backbone
        self.online["projector"] = MLPHead2d(dense.channels, proj_hidden_dim, proj_dim, num_layers=3,
                                             norm=head_norm, act="gelu", init="trunc_normal")
        self.online["grouping"] = SemanticGrouping(num_prototypes, proj_dim, temp=teacher_temp)
        self.online["predictor"] = MLPHead(proj_dim, proj_hidden_dim, proj_dim, num_layers=3,
                                           norm=head_norm, act="gelu", init="trunc_normal")
        self.build_target(["backbone", "projector", "grouping"])
        self.pixel_loss = PixelDistillLoss(num_prototypes, student_temp, teacher_temp, center_momentum)
        self.slot_loss = SlotInfoNCELoss(slot_temp)

    def build_transform(self) -> Callable[[Any], dict[str, Any]]:
        return BoxAwareViews.from_preset("slotcon", size=self.image_size)

    def _branch(self, branch: nn.ModuleDict, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(slots [B, K, D], scores [B, K, h, w])`` of one view."""
        feats = branch["projector"](branch["backbone"](x).maps[self.map_name])
        # cosine scores and softmax in float32 even under autocast (fp16 normalisation blows up)
        with torch.autocast(x.device.type, enabled=False):
            return branch["grouping"](feats.float())

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        v1, v2 = batch["views"][:2]
        size = (v1.shape[-2], v1.shape[-1])
        boxes = (batch["overlap"][:, 0, 1], batch["overlap"][:, 1, 0])
        flips = (batch["flips"][:, 0], batch["flips"][:, 1])
        # a sample whose views share nothing has no aligned pixels: it is left out of the pixel loss
        valid = batch["overlap_valid"][:, 0, 1] & batch["overlap_valid"][:, 1, 0]

        (q1, s_q1), (q2, s_q2) = self._branch(self.online, v1), self._branch(self.online, v2)
        with torch.no_grad():
            (k1, s_k1), (k2, s_k2) = self._branch(self.target, v1), self._branch(self.target, v2)

        def aligned(scores: Tensor, view: int) -> Tensor:
            return align_to_overlap(scores[valid], boxes[view][valid], flips[view][valid], size)

        w = self.group_loss_weight
        if bool(valid.any()):
            loss_group = self.pixel_loss(aligned(s_q1, 0), aligned(s_k2, 1)) + self.pixel_loss(
                aligned(s_q2, 1), aligned(s_k1, 0))
        else:
            loss_group = (s_q1.sum() + s_q2.sum()) * 0.0
        # the centre follows the unaligned teacher scores (as the official code), skipped if non-finite
        self.pixel_loss.update_center(torch.cat([s_k1, s_k2]))

        present_k1, present_k2 = present_slots(s_k1), present_slots(s_k2)
        loss_slot = self._contrast(q1, s_q1, k2, present_k2) + self._contrast(q2, s_q2, k1, present_k1)
        loss = w * loss_group + (1 - w) * loss_slot
        n_slots = (present_k1.sum(1) + present_k2.sum(1)).float().mean() / 2
        return {
            "loss": loss,
            "loss_group": loss_group.detach(),
            "loss_slot": loss_slot.detach(),
            "n_slots": n_slots,  # present prototypes per image: a collapse shows up here first
            "invalid_overlaps": (~valid).sum().float(),
        }

    def _contrast(self, q_slots: Tensor, q_scores: Tensor, k_slots: Tensor, k_present: Tensor) -> Tensor:
        both = present_slots(q_scores) & k_present
        index = torch.nonzero(both.reshape(-1)).reshape(-1)
        if len(index) < 2 and self.training:  # BatchNorm in the predictor needs two rows
            return q_slots.sum() * 0.0
        queries = self.online["predictor"](q_slots.reshape(-1, q_slots.shape[-1])[index])
        return self.slot_loss(queries, index, k_slots, k_present)
