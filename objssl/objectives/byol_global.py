"""``byol_global``: BYOL's image-level term (Grill et al., 2020).

online: pooled backbone vector → projector (→4096→256) → predictor (→4096→256);
target: EMA projector; loss 2 − 2cos of views 1 and 2, symmetrised as a sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from objssl.heads import MLPHead
from objssl.losses import BYOLLoss
from objssl.objectives.base import BuildContext, Objective
from objssl.registry import OBJECTIVES

__all__ = ["BYOLGlobal"]


@OBJECTIVES.register("byol_global")
class BYOLGlobal(Objective):
    """Args: proj_hidden_dim, proj_dim, pred_hidden_dim (4096, 256, 4096); head_norm (``bn``, ``ln``, ``none``)."""

    name = "byol_global"
    needs = frozenset({"views"})
    pooled = True
    reads = "pooled vector"
    target_heads = ("projector",)

    def __init__(self, *, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 head_norm: str = "bn") -> None:
        super().__init__()
        self.proj_hidden_dim, self.proj_dim, self.pred_hidden_dim, self.head_norm = (
            proj_hidden_dim, proj_dim, pred_hidden_dim, head_norm)
        self.criterion = BYOLLoss()

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        projector = MLPHead(ctx.backbone.num_features, self.proj_hidden_dim, self.proj_dim, norm=self.head_norm)
        return {"projector": projector,
                "predictor": MLPHead(self.proj_dim, self.pred_hidden_dim, self.proj_dim, norm=self.head_norm)}

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        online, target = feats.heads("online", self.name), feats.heads("target", self.name)
        # views go through separately, as in the official code: BatchNorm statistics stay per view
        p1, p2 = (online["predictor"](online["projector"](feats.backbone("online", v).pooled)) for v in (0, 1))
        z1, z2 = (feats.memo("target", v, self.name, lambda v=v: target["projector"](feats.backbone("target", v).pooled))
                  for v in (0, 1))
        return {"loss": self.criterion(p1, p2, z1, z2)}
