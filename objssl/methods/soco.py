"""SoCo (Wei et al., NeurIPS 2021): object-level BYOL on selective-search boxes across box-aware views.

FPN (``soco``, ``soco_star``): the ``soco_boxes`` term — backbone c2..c5 → FPN p2..p5 → each box
RoIAligned on its level → 4conv1fc box head → projector → predictor (online only).
C4 (``soco_c4``): the ``soco_c4_boxes`` term — backbone up to c4 → RoIAlign 14x14 → the backbone's own
last stage → average pool → projector → predictor. Target: EMA of everything but the predictor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from objssl.data.views import BoxAwareViews
from objssl.data.views.box_aware_views import BOX_SETS
from objssl.errors import ConfigError
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import SoCoBoxes, SoCoC4Boxes
from objssl.registry import METHODS

__all__ = ["SoCo", "SoCoStar", "SoCoC4"]


class _BoxMethod(ObjectiveMethod):
    """Shared by the SoCo variants: proposals from ``data.proposals`` and the view preset."""

    preset = "soco"
    uses_data = frozenset({"proposals"})
    #: per-view changes to the preset (``BoxAwareViews.from_preset(view_overrides=...)``)
    view_overrides: dict[int, dict[str, Any]] = {}

    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        super().check_config(method_cfg)
        box_sets = cls.config_value(method_cfg, "box_sets")
        if box_sets not in BOX_SETS:
            raise ConfigError(f"method.box_sets={box_sets!r}: must be one of {', '.join(BOX_SETS)}")
        p, area = cls.config_value(method_cfg, "cutout_p"), cls.config_value(method_cfg, "cutout_area")
        if not 0 <= p <= 1:
            raise ConfigError(f"method.cutout_p={p!r}: must be a probability in [0, 1]")
        if len(area) != 2 or not 0 <= area[0] <= area[1] <= 1:
            raise ConfigError(f"method.cutout_area={list(area)!r}: must be [low, high] with 0 <= low <= high <= 1")

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """The preset's box-aware views (:data:`objssl.data.views.VIEW_PRESETS`) at ``image_size`` with ``k``
        boxes, ``box_sets`` and the box cutout of views 2.. (``cutout_p``, ``cutout_area``)."""
        cls.check_config(method_cfg)
        value = lambda key: cls.config_value(method_cfg, key)  # noqa: E731
        return BoxAwareViews.from_preset(cls.preset, proposals=proposals, size=value("image_size"), k=value("k"),
                                         box_sets=value("box_sets"), cutout_p=float(value("cutout_p")),
                                         cutout_area=tuple(value("cutout_area")), view_overrides=cls.view_overrides,
                                         augment_on=augment_on)


@METHODS.register("soco")
class SoCo(_BoxMethod):
    """SoCo with an FPN over any timm CNN (or a ViT with ``simple_pyramid=True``).

    Args:
        backbone: an objssl backbone with maps ``c2..c5``.
        image_size: size of view 1 and 2 (view 3 is half; the level thresholds scale with it).
        k: boxes per image (4).
        fpn_channels, norm: FPN/box-head width and norm (``bn``: SoCo; SyncBN under DDP).
        proj_hidden_dim, proj_dim: projector/predictor sizes (4096, 256).
        level_thresholds: box sizes (pixels at 224) that bound P2..P5 (48, 96, 192, 224).
        box_sets: ``per_pair`` (SoCo's rule: the 1–2 and 1–3 pairs draw their boxes, view-1 jitter and
            padding independently) or ``shared`` (one set visible in every view).
        cutout_p, cutout_area: box cutout in views 2 and 3 (SoCo's FPN-100ep recipe: 0.5, (0.1, 0.3);
            off, 0, in its 400-epoch and SoCo* recipes).

    Proposals come from ``data.proposals`` (a cache folder or JSON), read by the transform.
    """

    name = "soco"
    preset = "soco"

    def __init__(
        self,
        backbone: nn.Module,
        *,
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
        box_sets: str = "per_pair",
        cutout_p: float = 0.0,
        cutout_area: tuple[float, float] = (0.1, 0.3),
    ) -> None:
        term = SoCoBoxes(fpn_channels=fpn_channels, norm=norm, box_fc_dim=box_fc_dim, proj_hidden_dim=proj_hidden_dim,
                         proj_dim=proj_dim, level_thresholds=tuple(level_thresholds))
        super().__init__(backbone, [(term, 1.0)], image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self.k = k
        self._hparams = {"image_size": image_size, "k": k, "box_sets": box_sets, "cutout_p": cutout_p,
                         "cutout_area": tuple(cutout_area)}


@METHODS.register("soco_star")
class SoCoStar(SoCo):
    """SoCo*: views 224 / 224 / 192 plus view 4 = view 2 at 112, a third loss pair 1–4."""

    name = "soco_star"
    preset = "soco_star"


@METHODS.register("soco_c4")
class SoCoC4(_BoxMethod):
    """SoCo-C4: RoIAlign 14x14 on c4, the backbone's last stage as res5, average pool, projector.

    Works for timm CNNs whose last stage takes the c4 map (ResNets, ConvNeXts, RegNets...). View 1's
    boxes are not jittered and view 2 has box cutout by default (0.5, (0.1, 0.3)), as the official C4 data.
    """

    name = "soco_c4"
    preset = "soco_c4"
    # the official C4 data jitters no box (ImageFolderImageAsymBboxCutout never calls jitter_props)
    view_overrides = {0: {"box_jitter": 0.0}}

    def __init__(
        self,
        backbone: nn.Module,
        *,
        image_size: int = 224,
        k: int = 4,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
        box_sets: str = "per_pair",
        cutout_p: float = 0.5,
        cutout_area: tuple[float, float] = (0.1, 0.3),
    ) -> None:
        term = SoCoC4Boxes(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim)
        super().__init__(backbone, [(term, 1.0)], image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self.k = k
        self._hparams = {"image_size": image_size, "k": k, "box_sets": box_sets, "cutout_p": cutout_p,
                         "cutout_area": tuple(cutout_area)}
