"""``soco_boxes``: SoCo's object-level term on an FPN (Wei et al., NeurIPS 2021).

Each box is RoIAligned on the FPN level its size picks (in its own view) → 4conv1fc box head →
projector (→4096→256) → predictor (online only). Loss: normalised regression over the box
correspondence of view 1 with every other view (1–2, 1–3, and 1–4 with SoCo*'s fourth view), symmetrised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from objssl.errors import ConfigError
from objssl.heads import ConvFCBoxHead, MLPHead, assign_fpn_levels, multilevel_roi_align
from objssl.losses import MaskedRegressionLoss, correspondence_matrix
from objssl.objectives.base import BuildContext, Objective
from objssl.registry import OBJECTIVES

__all__ = ["SoCoBoxes", "box_rows", "pairwise_box_loss"]

FPN_LEVELS = ("c2", "c3", "c4", "c5")


def box_rows(module: nn.Module, x: Tensor, used: Tensor) -> Tensor:
    """``module`` on the used rows of ``x [B, K, ...]`` only (BatchNorm sees no padding); zeros elsewhere."""
    B, K = used.shape
    rows = torch.nonzero(used.reshape(-1)).reshape(-1)
    y = module(x.reshape(B * K, *x.shape[2:])[rows])
    return y.new_zeros(B * K, y.shape[-1]).index_copy(0, rows, y).view(B, K, -1)


def pairwise_box_loss(
    criterion: nn.Module, preds: list[Tensor], targets: list[Tensor], used: list[Tensor], ids: Tensor
) -> tuple[Tensor, Tensor]:
    """View 1 against each other view: ``(summed loss, mean positives per image per pair)``."""
    loss = torch.zeros((), device=ids.device)
    positives = torch.zeros((), device=ids.device)
    for b in range(1, len(preds)):
        corr = correspondence_matrix(ids, used[0], ids, used[b])
        loss = loss + criterion(preds[0], targets[0], preds[b], targets[b], corr)
        positives = positives + corr.sum((1, 2)).mean()
    return loss, positives.detach() / (len(preds) - 1)


@OBJECTIVES.register("soco_boxes")
class SoCoBoxes(Objective):
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

    def _embed(self, feats: Any, branch: str, view: int, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
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

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        boxes, mask, ids = batch["boxes"], batch["box_mask"].bool(), batch["box_ids"]
        views = range(len(batch["views"]))
        online = [self._embed(feats, "online", v, boxes[v], mask) for v in views]
        target = [feats.memo("target", v, self.name, lambda v=v: self._embed(feats, "target", v, boxes[v], mask))
                  for v in views]
        predictor = feats.heads("online", self.name)["predictor"]
        preds = [box_rows(predictor, z, used) for z, used in online]
        loss, positives = pairwise_box_loss(self.criterion, preds, [z for z, _ in target], [u for _, u in online], ids)
        return {"loss": loss, "positives_per_image": positives}
