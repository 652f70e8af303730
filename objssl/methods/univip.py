"""UniVIP (Li et al., CVPR 2022): scene–scene, scene–instance and instance–instance (optimal
transport) learning over one backbone — ``byol_global`` + ``univip_scene_instance`` +
``univip_instance_ot``, weights 1 / 1 / 1, on the ``univip`` view preset (two scenes whose overlap
holds K = 4 filtered proposals, and those K boxes as instance crops of the original image).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from objssl.data.views import BoxAwareViews
from objssl.errors import ConfigError
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BYOLGlobal, UniVIPInstanceOT, UniVIPSceneInstance
from objssl.objectives.univip_instance_ot import MARGINALS
from objssl.registry import METHODS

__all__ = ["UniVIP"]


@METHODS.register("univip")
class UniVIP(ObjectiveMethod):
    """UniVIP over any backbone that returns a pooled vector.

    Args:
        backbone: an objssl backbone (``create_backbone``).
        proj_hidden_dim, proj_dim, pred_hidden_dim: projector / predictor sizes (4096, 256, 4096) of
            the scene head (``byol_global``) and of the scene–instance / instance head group (``univip``).
        head_norm: ``bn`` (SyncBN under DDP), ``ln`` or ``none``.
        image_size: side of both scenes (224); the instance canvas scales with it.
        instance_size: side of the instance crops (96).
        k: instances per image (4).
        ot_eps, ot_iters, ot_marginals: Sinkhorn ε (0.1), iterations (50) and marginal rule (``scene``).
        base_momentum, final_momentum: EMA schedule (0.99 → 1, cosine).

    Proposals come from ``data.proposals`` (a cache folder or JSON), read by the transform.
    """

    name = "univip"
    uses_data = frozenset({"proposals"})

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        pred_hidden_dim: int = 4096,
        head_norm: str = "bn",
        image_size: int = 224,
        instance_size: int = 96,
        k: int = 4,
        ot_eps: float = 0.1,
        ot_iters: int = 50,
        ot_marginals: str = "scene",
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        heads = dict(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim,
                     head_norm=head_norm)
        terms = [
            (BYOLGlobal(**heads), 1.0),
            (UniVIPSceneInstance(k=k, instance_size=instance_size, **heads), 1.0),
            (UniVIPInstanceOT(eps=ot_eps, iters=ot_iters, marginals=ot_marginals, instance_size=instance_size,
                              **heads), 1.0),
        ]
        super().__init__(backbone, terms, image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self._hparams = {"image_size": image_size, "k": k}

    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        super().check_config(method_cfg)
        marginals, eps = cls.config_value(method_cfg, "ot_marginals"), cls.config_value(method_cfg, "ot_eps")
        if marginals not in MARGINALS:
            raise ConfigError(f"method.ot_marginals={marginals!r}: must be one of {', '.join(MARGINALS)}")
        if not eps > 0:
            raise ConfigError(f"method.ot_eps={eps!r}: must be > 0")

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """The ``univip`` preset (:data:`objssl.data.views.VIEW_PRESETS`) at ``image_size`` with ``k`` boxes."""
        k = cls.config_value(method_cfg, "k")
        return BoxAwareViews.from_preset("univip", proposals=proposals, size=cls.config_value(method_cfg, "image_size"),
                                         k=k, min_boxes=k, augment_on=augment_on)
