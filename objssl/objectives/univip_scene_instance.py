"""``univip_scene_instance``: UniVIP's scene–instance term (Li et al., CVPR 2022, §3).

The K online instance predictions are concatenated and fused by ``Linear(K·D → D)`` into one vector
``I``; it regresses each scene's target projection: ``ℓ(I, z_t(s1)) + ℓ(I, z_t(s2))`` with BYOL's
``ℓ = 2 − 2cos`` (the paper's ``−cos`` up to an affine change), averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from objssl.losses import byol_loss
from objssl.objectives.base import BuildContext
from objssl.objectives.univip_heads import UniVIPTerm
from objssl.registry import OBJECTIVES

__all__ = ["UniVIPSceneInstance", "scene_instance_loss"]


def scene_instance_loss(fused: Tensor, scenes: list[Tensor]) -> Tensor:
    """``Σ_s mean_b (2 − 2cos(fused_b, scene_s,b))`` for ``fused [B, D]`` and each ``scene [B, D]``."""
    return sum((byol_loss(fused, z) for z in scenes), fused.new_zeros((), dtype=fused.float().dtype))


@OBJECTIVES.register("univip_scene_instance")
class UniVIPSceneInstance(UniVIPTerm):
    """Args: k (4: instances per image, the fuser's input count) and those of the ``univip`` group
    (:class:`objssl.objectives.univip_heads.UniVIPTerm`)."""

    name = "univip_scene_instance"

    def __init__(self, *, k: int = 4, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 head_norm: str = "bn", instance_size: int = 96) -> None:
        super().__init__(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim,
                         head_norm=head_norm, instance_size=instance_size)
        if k < 1:
            raise ValueError(f"{self.name}: k must be >= 1, got {k}")
        self.k = k

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        return {"fuser": nn.Linear(self.k * self.proj_dim, self.proj_dim)}

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        K = batch["instances"]["boxes"].shape[1]
        if K != self.k:
            raise ValueError(f"{self.name}: the batch has {K} instances per image, the fuser takes k={self.k}")
        online = self.online_instances(batch, feats)
        # padded instances (mask False) enter the fuser as zeros
        online = online * batch["box_mask"].to(online.dtype)[..., None]
        fused = feats.heads("online", self.name)["fuser"](online.flatten(1))
        return {"loss": scene_instance_loss(fused, self.target_scenes(feats))}
