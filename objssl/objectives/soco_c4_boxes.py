"""``soco_c4_boxes``: SoCo-C4's object-level term: RoIAlign 14x14 on c4, the backbone's own last stage
(res5) on every box, average pool → projector (→4096→256) → predictor (online only).

The backbone runs only up to c4 on the whole image when no other term needs more
(``forward_intermediates(stop_early=True)``); the last stage sees the RoI features only. Works for timm
CNNs whose last stage takes the c4 map (ResNets, ConvNeXts, RegNets...).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from objssl.errors import ConfigError
from objssl.heads import MLPHead
from objssl.losses import MaskedRegressionLoss
from objssl.objectives.base import BuildContext
from objssl.objectives.box_pairs import BoxPairTerm
from objssl.ops import boxes_to_rois
from objssl.registry import OBJECTIVES

__all__ = ["SoCoC4Boxes"]


@OBJECTIVES.register("soco_c4_boxes")
class SoCoC4Boxes(BoxPairTerm):
    """Args: proj_hidden_dim, proj_dim (4096, 256)."""

    name = "soco_c4_boxes"
    needs = frozenset({"views", "boxes"})
    all_views = True
    reads = "c4 (the image stops there), the last stage on each box"
    target_heads = ("projector",)

    def __init__(self, *, proj_hidden_dim: int = 4096, proj_dim: int = 256) -> None:
        super().__init__()
        self.proj_hidden_dim, self.proj_dim = proj_hidden_dim, proj_dim
        self.criterion = MaskedRegressionLoss()

    def _stages(self, backbone: nn.Module) -> tuple[Any, Any]:
        infos = list(backbone.feature_info)
        c4 = [i for i, f in enumerate(infos) if f.stride == 16 and f.module]
        if not c4 or c4[-1] == len(infos) - 1 or not infos[-1].module:
            raise ConfigError(f"{self.name}: backbone {backbone.model_name!r} has no stride-16 map followed by a last stage")
        return infos[c4[-1]], infos[-1]

    def backbone_maps(self, backbone: nn.Module) -> list[str]:
        return [self._stages(backbone)[0].name]

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        c4, res5 = self._stages(ctx.backbone)
        self.c4_name, self.c4_stride, self.res5_name = c4.name, c4.stride, res5.name
        return {"projector": MLPHead(res5.channels, self.proj_hidden_dim, self.proj_dim),
                "predictor": MLPHead(self.proj_dim, self.proj_hidden_dim, self.proj_dim)}

    def embed(self, feats: Any, branch: str, view: int, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        c4 = feats.backbone(branch, view).maps[self.c4_name]
        B, K = mask.shape
        rows = torch.nonzero(mask.reshape(-1)).reshape(-1)
        rois = boxes_to_rois(boxes, mask)  # valid boxes in batch-then-box order, as ``rows``
        pooled = roi_align(c4, rois.to(c4.dtype), 14, spatial_scale=1.0 / self.c4_stride, sampling_ratio=0, aligned=True)
        res5 = feats.heads(branch, "backbone").module_of(self.res5_name)
        z = feats.heads(branch, self.name)["projector"](res5(pooled).mean(dim=(2, 3)))
        return z.new_zeros(B * K, z.shape[-1]).index_copy(0, rows, z).view(B, K, -1), mask
