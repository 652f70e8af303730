"""The head group SlotCon's two terms share (``online.slotcon`` / ``target.slotcon``): a dense projector
(1x1 convs →4096→4096→256) on the deepest backbone map and the grouping by K learnable prototypes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from objssl.heads import MLPHead2d, SemanticGrouping
from objssl.objectives.base import BuildContext, Objective

__all__ = ["SlotConHeads", "slots_and_scores"]

GROUP = "slotcon"


def slots_and_scores(feats: Any, branch: str, view: int, map_name: str) -> tuple[Tensor, Tensor]:
    """``(slots [B, K, D], scores [B, K, h, w])`` of one view, computed once per step and branch."""

    def compute() -> tuple[Tensor, Tensor]:
        heads = feats.heads(branch, GROUP)
        x = heads["projector"](feats.backbone(branch, view).maps[map_name])
        # cosine scores and softmax in float32 even under autocast (fp16 normalisation blows up)
        with torch.autocast(x.device.type, enabled=False):
            return heads["grouping"](x.float())

    return feats.memo(branch, view, GROUP, compute)


class SlotConHeads(Objective):
    """Base of the SlotCon terms: the shared group and its arguments (num_prototypes K = 256 for COCO,
    2048 for ImageNet; proj_hidden_dim, proj_dim = 4096, 256; head_norm ``bn``; teacher_temp 0.07, also
    the grouping temperature)."""

    needs = frozenset({"views", "overlap"})
    shared_group = GROUP
    reads = "the deepest map"
    shared_target_heads = ("projector", "grouping")
    shared_args = ("num_prototypes", "proj_hidden_dim", "proj_dim", "head_norm", "teacher_temp")

    def __init__(self, *, num_prototypes: int = 256, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 head_norm: str = "bn", teacher_temp: float = 0.07) -> None:
        super().__init__()
        self.num_prototypes, self.proj_hidden_dim, self.proj_dim = num_prototypes, proj_hidden_dim, proj_dim
        self.head_norm, self.teacher_temp = head_norm, teacher_temp

    def backbone_maps(self, backbone: nn.Module) -> list[str]:
        self.map_name = backbone.feature_info[-1].name  # CNNs: stride 32; ViTs: the patch tokens as a map
        return [self.map_name]

    def build_shared(self, ctx: BuildContext) -> dict[str, nn.Module]:
        dense = ctx.backbone.feature_info[-1]
        return {
            "projector": MLPHead2d(dense.channels, self.proj_hidden_dim, self.proj_dim, num_layers=3,
                                   norm=self.head_norm, act="gelu", init="trunc_normal"),
            "grouping": SemanticGrouping(self.num_prototypes, self.proj_dim, temp=self.teacher_temp),
        }

    def scores(self, feats: Any, branch: str, view: int) -> tuple[Tensor, Tensor]:
        return slots_and_scores(feats, branch, view, self.map_name)
