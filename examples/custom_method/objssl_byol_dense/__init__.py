"""Example plugin: a dense BYOL term and a BYOL + dense-BYOL method, built only from objssl's public parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from objssl.data.views import BoxAwareViews
from objssl.heads import MLPHead2d
from objssl.losses import byol_loss
from objssl.methods import ObjectiveMethod
from objssl.objectives import BuildContext, BYOLGlobal, Objective
from objssl.ops import align_to_overlap

__all__ = ["DenseBYOL", "BYOLDense"]


class DenseBYOL(Objective):
    """BYOL's 2 − 2cos on every pixel of the region views 1 and 2 share (deepest map, 1x1-conv heads)."""

    name = "dense_byol"
    needs = frozenset({"views", "overlap"})
    reads = "the deepest map"
    target_heads = ("projector",)

    def __init__(self, *, proj_hidden_dim: int = 2048, proj_dim: int = 256) -> None:
        super().__init__()
        self.proj_hidden_dim, self.proj_dim = proj_hidden_dim, proj_dim

    def backbone_maps(self, backbone: nn.Module) -> list[str]:
        self.map_name = backbone.feature_info[-1].name
        return [self.map_name]

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        channels = ctx.backbone.feature_info[-1].channels
        return {"projector": MLPHead2d(channels, self.proj_hidden_dim, self.proj_dim),
                "predictor": MLPHead2d(self.proj_dim, self.proj_hidden_dim, self.proj_dim)}

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        size = tuple(batch["views"][0].shape[-2:])
        valid = batch["overlap_valid"][:, 0, 1] & batch["overlap_valid"][:, 1, 0]
        online, target = feats.heads("online", self.name), feats.heads("target", self.name)

        def aligned(x: Tensor, view: int) -> Tensor:  # [B, D, h, w] → the shared region, flattened per pixel
            other = 1 - view
            x = align_to_overlap(x[valid], batch["overlap"][valid, view, other], batch["flips"][valid, view], size)
            return x.flatten(2).transpose(1, 2)

        p = [online["predictor"](online["projector"](feats.backbone("online", v).maps[self.map_name])) for v in (0, 1)]
        z = [feats.memo("target", v, self.name, lambda v=v: target["projector"](feats.backbone("target", v).maps[self.map_name]))
             for v in (0, 1)]
        if not bool(valid.any()):
            return {"loss": (p[0].sum() + p[1].sum()) * 0.0}
        loss = byol_loss(aligned(p[0], 0), aligned(z[1], 1)) + byol_loss(aligned(p[1], 1), aligned(z[0], 0))
        return {"loss": loss}


class BYOLDense(ObjectiveMethod):
    """``byol_global`` (1 − w) + ``dense_byol`` (w) on SlotCon's views.

    Args: proj_hidden_dim, proj_dim, pred_hidden_dim (image-level heads), dense_hidden_dim (dense heads),
    dense_weight w (0.5), image_size, base_momentum, final_momentum.
    """

    name = "byol_dense"

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 pred_hidden_dim: int = 4096, dense_hidden_dim: int = 2048, dense_weight: float = 0.5,
                 image_size: int = 224, base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        terms = [(BYOLGlobal(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim),
                  1 - dense_weight),
                 (DenseBYOL(proj_hidden_dim=dense_hidden_dim, proj_dim=proj_dim), dense_weight)]
        super().__init__(backbone, terms, image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self._hparams = {"image_size": image_size}

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None,
                      augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        # augment_on="device": the views' pixels are made on the training device (data.augment_on)
        return BoxAwareViews.from_preset("slotcon", size=cls.config_value(method_cfg, "image_size"),
                                         augment_on=augment_on)
