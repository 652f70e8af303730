"""``soco_boxes``: SoCo's object-level term on an FPN (Wei et al., NeurIPS 2021).

Each box is RoIAligned on the FPN level its size picks (in its own view) → 4conv1fc box head →
projector (→4096→256) → predictor (online only). Loss: normalised regression over the box
correspondence of view 1 with every other view (1–2, 1–3, and 1–4 with SoCo*'s fourth view), symmetrised.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from objssl.errors import ConfigError
from objssl.heads import ConvFCBoxHead, MLPHead, assign_fpn_levels, multilevel_roi_align
from objssl.losses import MaskedRegressionLoss
from objssl.objectives.base import BuildContext
from objssl.objectives.box_pairs import BoxPairTerm, box_rows
from objssl.registry import OBJECTIVES

__all__ = ["SoCoBoxes"]

FPN_LEVELS = ("c2", "c3", "c4", "c5")


@OBJECTIVES.register("soco_boxes")
class SoCoBoxes(BoxPairTerm):
    """Args: fpn_channels (256) and norm (``bn``) of the FPN and box head; box_fc_dim (1024);
    proj_hidden_dim, proj_dim (4096, 256); level_thresholds: box sizes (pixels at 224) bounding P2..P5."""

    name = "soco_boxes"
    needs = frozenset({"views", "boxes"})
    all_views = True
    fpn = True
    reads = "c2..c5 through the shared FPN neck"
    target_heads = ("box_head", "projector")

    def __init__(self, *, fpn_channels: int = 256, norm: str = "bn", box_fc_dim: int = 1024,
                 proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 level_thresholds: tuple[float, ...] = (48, 96, 192, 224)) -> None:
        super().__init__()
        self.fpn_channels, self.norm, self.box_fc_dim = fpn_channels, norm, box_fc_dim
        self.proj_hidden_dim, self.proj_dim = proj_hidden_dim, proj_dim
        self.base_thresholds = tuple(level_thresholds)
        self.criterion = MaskedRegressionLoss()

    def backbone_maps(self, backbone: nn.Module) -> list[str]:
        have = [f.name for f in backbone.feature_info]
        if any(n not in have for n in FPN_LEVELS):
            raise ConfigError(f"{self.name} needs the backbone maps c2..c5 (got {have}); "
                              "for a ViT pass backbone.kwargs.simple_pyramid=true")
        return list(FPN_LEVELS)

    def neck_args(self) -> dict[str, Any]:
        return {"out_channels": self.fpn_channels, "norm": self.norm, "in_features": list(FPN_LEVELS)}

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        self.level_thresholds = tuple(t * ctx.image_size / 224 for t in self.base_thresholds)
        return {
            "box_head": ConvFCBoxHead(self.fpn_channels, self.fpn_channels, 4, self.box_fc_dim, 7, norm=self.norm),
            "projector": MLPHead(self.box_fc_dim, self.proj_hidden_dim, self.proj_dim),
            "predictor": MLPHead(self.proj_dim, self.proj_hidden_dim, self.proj_dim),
        }

    def embed(self, feats: Any, branch: str, view: int, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(projections [B, K, D], used [B, K])`` of one view's boxes."""
        pyramid = feats.pyramid(branch, view)
        neck = feats.heads(branch, "neck")
        levels = assign_fpn_levels(boxes, self.level_thresholds)
        used = mask & (levels >= 0)
        levels = torch.where(used, levels, torch.full_like(levels, -1))
        pooled = multilevel_roi_align([pyramid[n] for n in neck.out_names], boxes, levels,
                                      [neck.strides[n] for n in neck.out_names], output_size=7)
        heads = feats.heads(branch, self.name)
        B, K = used.shape
        # only used boxes go through the heads, so padding never enters the BatchNorm statistics
        z = box_rows(lambda x: heads["projector"](heads["box_head"](x)), pooled.view(B, K, *pooled.shape[1:]), used)
        return z, used
