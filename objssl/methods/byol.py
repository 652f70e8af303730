"""BYOL (Grill et al., 2020): the image-level method, and ORL's stage 1.

online: backbone → projector (→4096→256) → predictor (→4096→256)
target: EMA of backbone → projector;  loss: 2 − 2cos, symmetrised as a sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform, ViewAugmentation
from objssl.heads import MLPHead
from objssl.losses import BYOLLoss
from objssl.methods.base import Method
from objssl.registry import METHODS

__all__ = ["BYOL"]


@METHODS.register("byol")
class BYOL(Method):
    """BYOL over any backbone that returns a pooled vector.

    Args:
        backbone: an objssl backbone (``create_backbone``).
        proj_hidden_dim, proj_dim: projector sizes (4096 → 256).
        pred_hidden_dim: predictor hidden size (4096).
        head_norm: norm in the heads: ``bn`` (default, SyncBN under DDP), ``ln`` or ``none``.
        image_size: side of both views.
        base_momentum, final_momentum: EMA schedule (0.99 → 1, cosine).

    Batch: ``{"views": [v1, v2]}`` with ``v [B, 3, S, S]``.
    """

    name = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        pred_hidden_dim: int = 4096,
        head_norm: str = "bn",
        image_size: int = 224,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__(base_momentum, final_momentum)
        self.image_size = image_size
        self.online["backbone"] = backbone
        self.online["projector"] = MLPHead(backbone.num_features, proj_hidden_dim, proj_dim, norm=head_norm)
        self.online["predictor"] = MLPHead(proj_dim, pred_hidden_dim, proj_dim, norm=head_norm)
        self.build_target(["backbone", "projector"])
        self.criterion = BYOLLoss()

    def build_transform(self) -> Callable[[Any], dict[str, Any]]:
        augs = [ViewAugmentation(**{**a.__dict__, "size": self.image_size}) for a in BYOL_VIEWS]
        return MultiViewTransform.from_augmentations(augs)

    def _online(self, x: Tensor) -> Tensor:
        return self.online["predictor"](self.online["projector"](self.online["backbone"](x).pooled))

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        return self.target["projector"](self.target["backbone"](x).pooled)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        v1, v2 = batch["views"][:2]
        # views go through separately, as in the official code: BatchNorm statistics stay per view
        p1, p2 = self._online(v1), self._online(v2)
        z1, z2 = self._target(v1), self._target(v2)
        loss = self.criterion(p1, p2, z1, z2)
        return {"loss": loss}
