"""BYOL (Grill et al., 2020): the image-level method, and ORL's stage 1 — the ``byol_global`` term alone.

online: backbone → projector (→4096→256) → predictor (→4096→256)
target: EMA of backbone → projector;  loss: 2 − 2cos, symmetrised as a sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from objssl.data.device.image_views import image_views
from objssl.data.transforms import BYOL_VIEWS, ViewAugmentation
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BYOLGlobal
from objssl.registry import METHODS

__all__ = ["BYOL"]


@METHODS.register("byol")
class BYOL(ObjectiveMethod):
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
        term = BYOLGlobal(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim,
                          head_norm=head_norm)
        super().__init__(backbone, [(term, 1.0)], image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self._hparams = {"image_size": image_size}

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[[Any], dict[str, Any]]:
        """BYOL's two asymmetric views (:data:`objssl.data.transforms.BYOL_VIEWS`) at ``image_size``."""
        size = cls.config_value(method_cfg, "image_size")
        return image_views([ViewAugmentation(**{**a.__dict__, "size": size}) for a in BYOL_VIEWS], augment_on)
