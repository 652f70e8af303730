"""What UniVIP's scene–instance and instance–instance terms share: one projector / predictor pair
(the ``univip`` head group) for the scenes and the instances, and the vectors of one step, each
computed once (:class:`objssl.objectives.StepFeatures` memo) whichever of the two terms asks first.

online: pooled backbone vector → projector (→4096→256) → predictor (→4096→256); target: EMA projector.
Scenes are the batch's views 0 and 1; instances the K crops of :func:`crop_instances`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from objssl.heads import MLPHead
from objssl.objectives.base import BuildContext, Objective
from objssl.objectives.univip_instances import crop_instances

__all__ = ["UniVIPTerm", "INSTANCE_INPUT"]

#: name of the instance crops in the step's feature cache
INSTANCE_INPUT = "univip_instances"


class UniVIPTerm(Objective):
    """Base of the UniVIP terms. Args (shared by the group, given once): proj_hidden_dim, proj_dim,
    pred_hidden_dim (4096, 256, 4096), head_norm (``bn``), instance_size (96: instance crop side)."""

    needs: ClassVar[frozenset[str]] = frozenset({"views", "boxes", "instances"})
    pooled = True
    reads = "pooled vector of the scenes and of the instance crops"
    shared_group = "univip"
    shared_target_heads = ("projector",)
    shared_args = ("proj_hidden_dim", "proj_dim", "pred_hidden_dim", "head_norm", "instance_size")

    def __init__(self, *, proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 head_norm: str = "bn", instance_size: int = 96) -> None:
        super().__init__()
        if instance_size < 8:
            raise ValueError(f"{self.name}: instance_size must be >= 8, got {instance_size}")
        self.proj_hidden_dim, self.proj_dim, self.pred_hidden_dim = proj_hidden_dim, proj_dim, pred_hidden_dim
        self.head_norm, self.instance_size = head_norm, instance_size

    def build_shared(self, ctx: BuildContext) -> dict[str, nn.Module]:
        return {"projector": MLPHead(ctx.backbone.num_features, self.proj_hidden_dim, self.proj_dim, norm=self.head_norm),
                "predictor": MLPHead(self.proj_dim, self.pred_hidden_dim, self.proj_dim, norm=self.head_norm)}

    # ------------------------------------------------------------------ vectors of the step
    def _online(self, feats: Any, view: int | str) -> Tensor:
        heads = feats.heads("online", self.shared_group)
        return feats.memo("online", view, "univip/prediction",
                          lambda: heads["predictor"](heads["projector"](feats.backbone("online", view).pooled)))

    def _target(self, feats: Any, view: int | str) -> Tensor:
        heads = feats.heads("target", self.shared_group)
        return feats.memo("target", view, "univip/projection",
                          lambda: heads["projector"](feats.backbone("target", view).pooled))

    def online_scenes(self, feats: Any) -> list[Tensor]:
        """Online predictions of scenes 1 and 2, ``[B, D]`` each."""
        return [self._online(feats, v) for v in (0, 1)]

    def target_scenes(self, feats: Any) -> list[Tensor]:
        """Target projections of scenes 1 and 2, ``[B, D]`` each (no gradient)."""
        return [self._target(feats, v) for v in (0, 1)]

    def _instances(self, batch: Mapping[str, Any], feats: Any) -> tuple[str, int, int]:
        inst = batch["instances"]
        B, K = inst["boxes"].shape[:2]
        name = feats.add_input(INSTANCE_INPUT, lambda: crop_instances(
            inst["canvas"], inst["boxes"], inst["flips"], self.instance_size))
        return name, B, K

    def online_instances(self, batch: Mapping[str, Any], feats: Any) -> Tensor:
        """Online predictions of the K instances, ``[B, K, D]``."""
        name, B, K = self._instances(batch, feats)
        return self._online(feats, name).reshape(B, K, -1)

    def target_instances(self, batch: Mapping[str, Any], feats: Any) -> Tensor:
        """Target projections of the K instances, ``[B, K, D]`` (no gradient)."""
        name, B, K = self._instances(batch, feats)
        return self._target(feats, name).reshape(B, K, -1)
