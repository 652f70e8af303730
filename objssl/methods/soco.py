"""SoCo (Wei et al., NeurIPS 2021): object-level BYOL on selective-search boxes across box-aware views.

FPN (``soco``, ``soco_star``): backbone c2..c5 → FPN p2..p5 → each box RoIAligned on its level
(by its size in its own view) → 4conv1fc box head → projector (→4096→256) → predictor (online only).
C4 (``soco_c4``): backbone up to c4 → RoIAlign 14x14 → the backbone's own last stage (res5) → average
pool → projector → predictor. Target: EMA of everything but the predictor. Loss: normalised regression
over the box correspondence of view 1 with every other view, symmetrised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from objssl.data.views import BoxAwareViews
from objssl.errors import ConfigError
from objssl.heads import ConvFCBoxHead, MLPHead, assign_fpn_levels, multilevel_roi_align
from objssl.losses import MaskedRegressionLoss, correspondence_matrix
from objssl.methods.base import Method
from objssl.necks import FPNNeck
from objssl.proposals import open_proposals
from objssl.registry import METHODS

log = logging.getLogger(__name__)

__all__ = ["SoCo", "SoCoStar", "SoCoC4"]


def _rows(module: nn.Module, x: Tensor, used: Tensor) -> Tensor:
    """``module`` on the used rows of ``x [B, K, D]`` only (BatchNorm sees no padding); zeros elsewhere."""
    B, K, D = x.shape
    rows = torch.nonzero(used.reshape(-1)).reshape(-1)
    y = module(x.reshape(B * K, D)[rows])
    return y.new_zeros(B * K, y.shape[-1]).index_copy(0, rows, y).view(B, K, -1)


class _BoxMethod(Method):
    """Shared by the SoCo variants: proposals, views, the pairwise loss."""

    preset = "soco"

    def __init__(self, proposals: str | None, image_size: int, k: int, base_momentum: float, final_momentum: float):
        super().__init__(base_momentum, final_momentum)
        self.proposals_path, self.image_size, self.k = proposals, image_size, k
        self.criterion = MaskedRegressionLoss()

    def build_transform(self) -> Callable[[Any], dict[str, Any]]:
        if self.proposals_path is None:
            raise ConfigError(
                f"{self.name} needs region proposals: build a cache with `objssl proposals --source "
                "selective_search --data DATA --out CACHE` and pass data.proposals=CACHE"
            )
        return BoxAwareViews.from_preset(self.preset, proposals=open_proposals(self.proposals_path),
                                         size=self.image_size, k=self.k)

    def _embed(self, branch: nn.ModuleDict, x: Tensor, boxes: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """``(projections [B, K, D], used [B, K])`` of one view's boxes; each variant defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define _embed()")

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        views, boxes = batch["views"], batch["boxes"]
        mask, ids = batch["box_mask"].bool(), batch["box_ids"]
        online = [self._embed(self.online, v, b, mask) for v, b in zip(views, boxes)]
        with torch.no_grad():
            target = [self._embed(self.target, v, b, mask) for v, b in zip(views, boxes)]
        preds = [_rows(self.online["predictor"], z, used) for z, used in online]
        loss = views[0].new_zeros(())
        positives = views[0].new_zeros(())
        for b in range(1, len(views)):  # view 1 against each other view: 1–2, 1–3 (and 1–4 for SoCo*)
            corr = correspondence_matrix(ids, online[0][1], ids, online[b][1])
            loss = loss + self.criterion(preds[0], target[0][0], preds[b], target[b][0], corr)
            positives = positives + corr.sum((1, 2)).mean()
        return {"loss": loss, "positives_per_image": positives.detach() / (len(views) - 1)}


@METHODS.register("soco")
class SoCo(_BoxMethod):
    """SoCo with an FPN over any timm CNN (or a ViT with ``simple_pyramid=True``).

    Args:
        backbone: an objssl backbone with maps ``c2..c5``.
        proposals: a proposal cache folder or JSON (``data.proposals``); needed for the data, not the model.
        image_size: size of view 1 and 2 (view 3 is half; the level thresholds scale with it).
        k: boxes per image (4).
        fpn_channels, norm: FPN/box-head width and norm (``bn``: SoCo; SyncBN under DDP).
        proj_hidden_dim, proj_dim: projector/predictor sizes (4096, 256).
        level_thresholds: box sizes (pixels at 224) that bound P2..P5 (48, 96, 192, 224).
    """

    name = "soco"
    preset = "soco"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proposals: str | None = None,
        image_size: int = 224,
        k: int = 4,
        fpn_channels: int = 256,
        norm: str = "bn",
        box_fc_dim: int = 1024,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        level_thresholds: tuple[float, ...] = (48, 96, 192, 224),
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__(proposals, image_size, k, base_momentum, final_momentum)
        levels = [n for n in ("c2", "c3", "c4", "c5") if n in backbone.channels()]
        if len(levels) != 4:
            raise ConfigError(
                f"{self.name} needs the backbone maps c2..c5 (got {backbone.out_features}); "
                "for a ViT pass backbone.kwargs.simple_pyramid=true"
            )
        self.level_thresholds = tuple(t * image_size / 224 for t in level_thresholds)
        self.online["backbone"] = backbone
        self.online["neck"] = FPNNeck(backbone.channels(), backbone.strides(), fpn_channels, norm=norm, in_features=levels)
        self.online["box_head"] = ConvFCBoxHead(fpn_channels, fpn_channels, 4, box_fc_dim, 7, norm=norm)
        self.online["projector"] = MLPHead(box_fc_dim, proj_hidden_dim, proj_dim)
        self.online["predictor"] = MLPHead(proj_dim, proj_hidden_dim, proj_dim)
        self.build_target(["backbone", "neck", "box_head", "projector"])

    def _embed(self, branch: nn.ModuleDict, x: Tensor, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(projections [B, K, D], used [B, K])`` of one view's boxes."""
        neck = branch["neck"]
        pyramid = neck(branch["backbone"](x).maps)
        levels = assign_fpn_levels(boxes, self.level_thresholds)
        used = mask & (levels >= 0)
        levels = torch.where(used, levels, torch.full_like(levels, -1))
        feats = multilevel_roi_align([pyramid[n] for n in neck.out_names], boxes, levels,
                                     [neck.strides[n] for n in neck.out_names], output_size=7)
        return self._project(branch, feats, used)

    def _project(self, branch: nn.ModuleDict, feats: Tensor, used: Tensor) -> tuple[Tensor, Tensor]:
        # only used boxes go through the heads, so padding never enters the BatchNorm statistics
        B, K = used.shape
        rows = torch.nonzero(used.reshape(-1)).reshape(-1)
        z = branch["projector"](branch["box_head"](feats[rows]))
        return z.new_zeros(B * K, z.shape[-1]).index_copy(0, rows, z).view(B, K, -1), used


@METHODS.register("soco_star")
class SoCoStar(SoCo):
    """SoCo*: views 224 / 224 / 192 plus view 4 = view 2 at 112, a third loss pair 1–4."""

    name = "soco_star"
    preset = "soco_star"


@METHODS.register("soco_c4")
class SoCoC4(_BoxMethod):
    """SoCo-C4: RoIAlign 14x14 on c4, the backbone's last stage as res5, average pool, projector.

    Works for timm CNNs whose last stage takes the c4 map (ResNets, ConvNeXts, RegNets...).
    """

    name = "soco_c4"
    preset = "soco_c4"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proposals: str | None = None,
        image_size: int = 224,
        k: int = 4,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__(proposals, image_size, k, base_momentum, final_momentum)
        infos = list(backbone.model.feature_info)  # timm's own entries: module names and strides
        c4 = [i for i, f in enumerate(infos) if f["reduction"] == 16]
        if not c4 or c4[-1] == len(infos) - 1:
            raise ConfigError(f"{self.name}: backbone {backbone.model_name!r} has no stride-16 map followed by a last stage")
        self.c4_index, self.res5_name = c4[-1], infos[-1]["module"]
        self.c4_stride = 16
        self.online["backbone"] = backbone
        self.online["projector"] = MLPHead(int(infos[-1]["num_chs"]), proj_hidden_dim, proj_dim)
        self.online["predictor"] = MLPHead(proj_dim, proj_hidden_dim, proj_dim)
        self.build_target(["backbone", "projector"])

    def _embed(self, branch: nn.ModuleDict, x: Tensor, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        model = branch["backbone"].model
        (c4,) = model.forward_intermediates(x, indices=[self.c4_index], intermediates_only=True, stop_early=True)
        B, K = mask.shape
        rows = torch.nonzero(mask.reshape(-1)).reshape(-1)
        batch_idx = torch.arange(B, device=x.device).repeat_interleave(K)[rows]
        rois = torch.cat([batch_idx[:, None].to(boxes.dtype), boxes.reshape(B * K, 4)[rows]], dim=1)
        feats = roi_align(c4, rois.to(c4.dtype), 14, spatial_scale=1.0 / self.c4_stride, sampling_ratio=0, aligned=True)
        z = branch["projector"](model.get_submodule(self.res5_name)(feats).mean(dim=(2, 3)))
        return z.new_zeros(B * K, z.shape[-1]).index_copy(0, rows, z).view(B, K, -1), mask
