"""SlotCon (Wen et al., NeurIPS 2022): semantic grouping by learnable prototypes + slot contrast.

The terms ``slotcon_pixel`` (weight w) and ``slotcon_slots`` (weight 1 − w) sharing the head group
``slotcon``: backbone (dense map) → dense projector (1x1 convs →4096→4096→256) → grouping (K prototypes)
→ slots → slot predictor (→4096→4096→256). Target: EMA of backbone, projector and prototypes.
loss = w · pixel self-distillation of aligned prototype scores (centred teacher)
       + (1 − w) · InfoNCE of slots present in both views, w = 0.5; both symmetrised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from objssl.data.views import BoxAwareViews
from objssl.errors import ConfigError
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import SlotConPixel, SlotConSlots
from objssl.registry import METHODS

__all__ = ["SlotCon"]


@METHODS.register("slotcon")
class SlotCon(ObjectiveMethod):
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
        if not 0 <= group_loss_weight <= 1:
            raise ValueError(f"slotcon: group_loss_weight must be in [0, 1], got {group_loss_weight}")
        shared = dict(num_prototypes=num_prototypes, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim,
                      head_norm=head_norm, teacher_temp=teacher_temp)
        w = group_loss_weight
        terms = [(SlotConPixel(**shared, student_temp=student_temp, center_momentum=center_momentum), w),
                 (SlotConSlots(**shared, slot_temp=slot_temp), 1 - w)]
        super().__init__(backbone, terms, image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self.group_loss_weight = group_loss_weight
        self.map_name = backbone.feature_info[-1].name
        self._hparams = {"image_size": image_size}

    @torch.no_grad()
    def teacher_scores(self, x: Tensor) -> Tensor:
        """Teacher prototype scores ``[B, K, h, w]`` (cosine) of a normalised image batch (``objssl viz slots``)."""
        t = self.target
        return t["slotcon"]["grouping"].scores(t["slotcon"]["projector"](t["backbone"](x).maps[self.map_name]).float())

    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        super().check_config(method_cfg)
        w = method_cfg.get("group_loss_weight", 0.5)
        if not 0 <= w <= 1:
            raise ConfigError(f"method.group_loss_weight={w!r}: must be in [0, 1]")

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """Two 224 bicubic crops sharing at least 1 % of view 2 (preset ``slotcon``) at ``image_size``."""
        return BoxAwareViews.from_preset("slotcon", size=cls.config_value(method_cfg, "image_size"), augment_on=augment_on)
