"""What ORL's two object-level terms share (Xie et al., NeurIPS 2021, stage 3): the image-level
``byol_global`` projector and its EMA copy (read as the ``byol_global`` head group), one predictor
per term, and BYOL's loss on a pair of 96-pixel RoI patches.

online: pooled backbone vector of patch a → ``byol_global`` projector → the term's predictor;
target: EMA backbone → EMA ``byol_global`` projector of patch b; loss ``ℓ(p_a, z_b) + ℓ(p_b, z_a)``
with ``ℓ = mean_b (2 − 2cos)``. Listed after ``byol_global`` (as in the ``orl`` method) the terms
reuse its projector; alone, the first of them builds a projector under that group's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from objssl.heads import MLPHead
from objssl.losses import BYOLLoss
from objssl.objectives.base import BuildContext, Objective

__all__ = ["ORLRoITerm", "PROJECTOR_GROUP"]

#: the head group the ORL terms read the projector from: byol_global's own heads
PROJECTOR_GROUP = "byol_global"


class ORLRoITerm(Objective):
    """Base of ``orl_intra_roi`` / ``orl_inter_roi``; subclasses set :attr:`patches` (the batch field).

    Args: proj_hidden_dim, proj_dim, head_norm (4096, 256, ``bn``): the ``byol_global`` projector's, given
    once for the group; pred_hidden_dim (4096): the term's own predictor (proj_dim → hidden → proj_dim).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"neighbours"})
    min_views = 1  # the whole-image views are byol_global's; these terms read only their patch pair
    pooled = True
    reads = "pooled vector of its two RoI patches"
    shared_group = PROJECTOR_GROUP
    shared_target_heads = ("projector",)
    shared_args = ("proj_hidden_dim", "proj_dim", "head_norm")
    #: ``float [B, 2, 3, P, P]`` batch field holding the term's patch pair
    patches: ClassVar[str] = ""

    def __init__(self, *, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 head_norm: str = "bn") -> None:
        super().__init__()
        self.proj_hidden_dim, self.proj_dim, self.pred_hidden_dim, self.head_norm = (
            proj_hidden_dim, proj_dim, pred_hidden_dim, head_norm)
        self.criterion = BYOLLoss()

    def views_used(self, num_views: int) -> list[int]:
        return []  # its inputs are the patches, added to the step's features by forward

    def build_shared(self, ctx: BuildContext) -> dict[str, nn.Module]:
        # byol_global's projector, for a method without byol_global (same sizes and layout)
        return {"projector": MLPHead(ctx.backbone.num_features, self.proj_hidden_dim, self.proj_dim, norm=self.head_norm)}

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        return {"predictor": MLPHead(self.proj_dim, self.pred_hidden_dim, self.proj_dim, norm=self.head_norm)}

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        pair = batch[self.patches]
        if pair.ndim != 5 or pair.shape[1] != 2:
            raise ValueError(f"{self.name}: batch[{self.patches!r}] must be [B, 2, 3, P, P], got {tuple(pair.shape)}")
        # each patch of the pair goes through the backbone on its own (per-view BatchNorm statistics, as ORL)
        inputs = [feats.add_input(f"{self.patches}/{v}", lambda v=v: pair[:, v].contiguous()) for v in (0, 1)]
        online_proj, target_proj = (feats.heads("online", PROJECTOR_GROUP)["projector"],
                                    feats.heads("target", PROJECTOR_GROUP)["projector"])
        predictor = feats.heads("online", self.name)["predictor"]
        p_a, p_b = (predictor(online_proj(feats.backbone("online", x).pooled)) for x in inputs)
        z_a, z_b = (feats.memo("target", x, "projection", lambda x=x: target_proj(feats.backbone("target", x).pooled))
                    for x in inputs)
        return {"loss": self.criterion(p_a, p_b, z_a, z_b)}
