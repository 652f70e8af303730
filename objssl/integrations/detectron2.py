"""objssl backbones for detectron2: any timm model, loaded from an objssl checkpoint.

Importing this module registers (needs detectron2: ``bash transfer/install.sh``):

* ``build_objssl_backbone`` — the timm model alone (maps ``c2``..``c5``), in ``BACKBONE_REGISTRY``;
* ``build_objssl_fpn_backbone`` — the same under an FPN with ``LastLevelMaxPool`` (``p2``..``p6``);
* ``build_objssl_c4_backbone`` — ResNets cut after res4 (map ``c4``), used with
  ``ObjsslRes5ROIHeads`` (in ``ROI_HEADS_REGISTRY``), whose per-region stage is the same timm
  model's ``layer4`` (res5), loaded from the same checkpoint.

Configure with :func:`add_objssl_config`::

    cfg = get_cfg(); add_objssl_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_objssl_fpn_backbone"
    cfg.MODEL.OBJSSL.NAME = "resnet50"                 # any timm name
    cfg.MODEL.OBJSSL.CHECKPOINT = "runs/byol/checkpoints/step_00100000.pth"
    cfg.MODEL.OBJSSL.WHICH = "teacher"                 # or "student"
    cfg.MODEL.FPN.IN_FEATURES = ["c2", "c3", "c4", "c5"]

``MODEL.OBJSSL`` keys: ``NAME``; ``OUT_FEATURES`` (maps the backbone returns; FPN/RPN/ROI
``IN_FEATURES`` name them); ``NORM`` (``BN``, ``SyncBN``, ``FrozenBN``: what the model's
BatchNorms become; LayerNorm models keep theirs); ``FREEZE_AT`` (0: train everything, as in the
self-supervised transfer protocol; 1: freeze the stem; k: stem + first k-1 levels, detectron2's
meaning); ``CHECKPOINT`` (objssl checkpoint or timm weights; empty: random init); ``WHICH``;
``STRICT`` (a checkpoint whose keys do not match the backbone is an error); ``TIMM_KWARGS``
(extra ``timm.create_model`` keywords, e.g. ``{"drop_path_rate": 0.1}``); ``SIMPLE_PYRAMID`` (ViTs:
strides 4..32 from the stride-16 map); ``RES5_EXTRA_NORM`` (C4: a norm after res5, as in the MoCo /
SoCo C4 configs; empty for none); ``PARTS`` (what of the checkpoint to load: ``backbone``,
``backbone+fpn`` or ``all`` — backbone, FPN and box head; empty: ``all`` the checkpoint's method
pretrains, which is the backbone alone for BYOL-like methods; ``train_net.py --parts``).

Loading never happens silently: the loaded / missing / unexpected / dropped keys are logged (logger
``objssl.integrations``) and kept as ``backbone.load_report`` (FPN: ``backbone.bottom_up``).
Parts of the detector that a method pretrains (SoCo's FPN and box head) are loaded by
:func:`load_objssl_parts` through :data:`objssl.export.detectron2_parts.D2_PART_MAPPERS`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.roi_heads import Res5ROIHeads

from objssl.errors import UserError
from objssl.integrations.dense_features import TimmDenseFeatures
from objssl.integrations.norms import NORMS
from objssl.integrations.weights import WeightsReport

__all__ = [
    "ObjsslBackbone",
    "ObjsslRes5ROIHeads",
    "add_objssl_config",
    "build_objssl_backbone",
    "build_objssl_fpn_backbone",
    "build_objssl_c4_backbone",
    "load_objssl_parts",
    "PART_CHOICES",
]

#: ``MODEL.OBJSSL.PARTS`` / ``train_net.py --parts``: what of a checkpoint goes into the detector
PART_CHOICES = ("backbone", "backbone+fpn", "all")

logger = logging.getLogger("objssl.integrations")


def add_objssl_config(cfg: CfgNode) -> CfgNode:
    """Add the ``MODEL.OBJSSL.*`` keys (defaults: ResNet-50, c2..c5, SyncBN, FREEZE_AT 0)."""
    cfg.MODEL.OBJSSL = CfgNode()
    cfg.MODEL.OBJSSL.NAME = "resnet50"
    cfg.MODEL.OBJSSL.OUT_FEATURES = ["c2", "c3", "c4", "c5"]
    cfg.MODEL.OBJSSL.NORM = "SyncBN"
    cfg.MODEL.OBJSSL.FREEZE_AT = 0
    cfg.MODEL.OBJSSL.CHECKPOINT = ""
    cfg.MODEL.OBJSSL.WHICH = "teacher"
    cfg.MODEL.OBJSSL.STRICT = True
    cfg.MODEL.OBJSSL.TIMM_KWARGS = CfgNode(new_allowed=True)
    cfg.MODEL.OBJSSL.SIMPLE_PYRAMID = False
    cfg.MODEL.OBJSSL.RES5_EXTRA_NORM = ""
    cfg.MODEL.OBJSSL.PARTS = ""
    return cfg


def _objssl_cfg(cfg: CfgNode) -> CfgNode:
    if "OBJSSL" not in cfg.MODEL:
        raise UserError("config has no MODEL.OBJSSL section: call add_objssl_config(cfg) before merging the file")
    return cfg.MODEL.OBJSSL


def _out_indices(name: str, out_features: list[str], timm_kwargs: dict[str, Any]) -> list[int]:
    """Map objssl map names (``c2``..``c5``) to timm feature indices (model built on meta)."""
    with torch.device("meta"):
        probe = TimmDenseFeatures(name, **timm_kwargs)
    by_name = {f.name: f.index for f in probe.feature_info}
    unknown = [f for f in out_features if f not in by_name]
    if unknown:
        raise UserError(
            f"MODEL.OBJSSL.OUT_FEATURES {unknown} not produced by {name!r}; it has {sorted(by_name)}"
        )
    return [by_name[f] for f in out_features]


class ObjsslBackbone(TimmDenseFeatures, Backbone):
    """A timm model as a detectron2 :class:`Backbone` returning ``{name: [B, C, H/s, W/s]}``.

    Keys: ``model.<timm key>`` (and ``pyramid.*`` with a simple pyramid). See
    :class:`~objssl.integrations.dense_features.TimmDenseFeatures` for the arguments.
    """

    def __init__(self, model_name: str, *, out_indices: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(model_name, out_indices=out_indices, **kwargs)
        self._out_features = self.names
        self._out_feature_channels = dict(zip(self.names, self.channels))
        self._out_feature_strides = dict(zip(self.names, self.strides))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self._out_features, TimmDenseFeatures.forward(self, x)))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(channels=self._out_feature_channels[n], stride=self._out_feature_strides[n])
            for n in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        # padded inputs divide by the coarsest stride: ViT patch grids need whole patches
        return max(self._out_feature_strides.values())


def _build(cfg: CfgNode, out_features: list[str]) -> ObjsslBackbone:
    o = _objssl_cfg(cfg)
    timm_kwargs = dict(o.TIMM_KWARGS)
    if o.SIMPLE_PYRAMID:
        timm_kwargs["simple_pyramid"] = True
    if o.NORM not in NORMS:
        raise UserError(f"MODEL.OBJSSL.NORM {o.NORM!r}: choose one of {', '.join(NORMS)}")
    if o.SIMPLE_PYRAMID:  # c2..c5 all come from the last ViT block
        unknown = sorted(set(out_features) - {"c2", "c3", "c4", "c5"})
        if unknown:
            raise UserError(f"MODEL.OBJSSL.OUT_FEATURES {unknown}: a simple pyramid gives c2, c3, c4, c5")
        indices = None
    else:
        indices = _out_indices(o.NAME, list(out_features), timm_kwargs)
    backbone = ObjsslBackbone(o.NAME, out_indices=indices, **timm_kwargs)
    if o.CHECKPOINT:
        backbone.load_weights(o.CHECKPOINT, which=o.WHICH, strict=o.STRICT)
    else:
        logger.warning("backbone %s: MODEL.OBJSSL.CHECKPOINT is empty: random initialisation", o.NAME)
    if backbone.pyramid is not None:
        logger.info("backbone %s: simple pyramid with %d new tensors (random initialisation)",
                    o.NAME, len(backbone.pyramid.state_dict()))
    backbone.convert_norm(o.NORM)
    backbone.freeze(o.FREEZE_AT)
    return backbone


@BACKBONE_REGISTRY.register()
def build_objssl_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """The timm model alone, returning ``MODEL.OBJSSL.OUT_FEATURES``."""
    return _build(cfg, _objssl_cfg(cfg).OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_objssl_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """``MODEL.FPN.IN_FEATURES`` of the timm model under an FPN (``p2``..``p6`` with ``LastLevelMaxPool``)."""
    bottom_up = _build(cfg, _objssl_cfg(cfg).OUT_FEATURES)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def _require_resnet(features: TimmDenseFeatures) -> None:
    if not isinstance(getattr(features.model, "layer4", None), nn.Sequential):
        raise UserError(
            f"the C4 backbone needs a ResNet-style timm model (res5 = its layer4); "
            f"{features.model_name!r} has none: use build_objssl_fpn_backbone"
        )


@BACKBONE_REGISTRY.register()
def build_objssl_c4_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """A timm ResNet up to res4 (map ``c4``, stride 16); res5 runs per region in ``ObjsslRes5ROIHeads``."""
    backbone = _build(cfg, ["c4"])
    with torch.device("meta"):
        _require_resnet(TimmDenseFeatures(_objssl_cfg(cfg).NAME, **dict(_objssl_cfg(cfg).TIMM_KWARGS)))
    logger.info("backbone %s (C4): layer4 (res5) is built and loaded by ObjsslRes5ROIHeads", backbone.model_name)
    return backbone


@ROI_HEADS_REGISTRY.register()
class ObjsslRes5ROIHeads(Res5ROIHeads):
    """Res5 ROI heads whose res5 is the timm ResNet's ``layer4``, loaded from ``MODEL.OBJSSL.CHECKPOINT``.

    With ``MODEL.OBJSSL.RES5_EXTRA_NORM`` (e.g. ``"SyncBN"``) a norm follows res5, as in the
    self-supervised C4 configs (MoCo, SoCo: ``Res5ROIHeadsExtraNorm``).
    """

    @classmethod
    def _build_res5_block(cls, cfg: CfgNode) -> tuple[nn.Module, int]:
        o = _objssl_cfg(cfg)
        features = TimmDenseFeatures(o.NAME, **dict(o.TIMM_KWARGS))
        _require_resnet(features)
        report: WeightsReport | None = None
        if o.CHECKPOINT:
            report = features.load_weights(o.CHECKPOINT, which=o.WHICH, strict=o.STRICT)
        features.convert_norm(o.NORM)
        res5: nn.Sequential = features.model.layer4
        out_channels = features.channels[-1]
        if o.RES5_EXTRA_NORM:
            res5.add_module("norm", get_norm(o.RES5_EXTRA_NORM, out_channels))
        n = len(res5.state_dict())
        if report is not None:
            res5.load_report = report  # type: ignore[attr-defined]
            logger.info("ROI heads res5 (%s layer4): %d tensors from %s", o.NAME,
                        sum(k.startswith("layer4.") for k in report.loaded), report.source)
        logger.info("ROI heads res5: %d tensors, %d channels out", n, out_channels)
        return res5, out_channels


def _chosen_parts(parts: dict[str, Tensor], choice: str) -> dict[str, Tensor]:
    """The mapped parts ``choice`` keeps: none (``backbone``: the builders load it), the FPN's own
    tensors (``backbone+fpn``: ``backbone.*`` outside the bottom-up model) or all of them."""
    if choice == "backbone":
        return {}
    if choice == "backbone+fpn":
        return {k: v for k, v in parts.items() if k.startswith("backbone.") and not k.startswith("backbone.bottom_up.")}
    return dict(parts)


def load_objssl_parts(model: nn.Module, cfg: CfgNode) -> list[str]:
    """Load the detector parts a method pretrained (FPN, box head) into a built model.

    Uses the mapper registered for the checkpoint's method in
    :data:`objssl.export.detectron2_parts.D2_PART_MAPPERS`; BYOL-like checkpoints have none, which is
    logged. ``MODEL.OBJSSL.PARTS`` (:data:`PART_CHOICES`; empty: all) picks what is loaded. Shapes
    must match; every key is reported. Returns the model keys loaded.
    """
    from objssl.checkpoint import NotAnObjsslCheckpointError, load_checkpoint
    from objssl.export.detectron2_parts import D2_PART_MAPPERS

    o = _objssl_cfg(cfg)
    choice = str(o.get("PARTS", "") or "all")
    if choice not in PART_CHOICES:
        raise UserError(f"MODEL.OBJSSL.PARTS (--parts) {choice!r}: choose one of {', '.join(PART_CHOICES)}")
    if not o.CHECKPOINT or not str(o.CHECKPOINT):
        return []
    try:
        ckpt = load_checkpoint(o.CHECKPOINT)
    except NotAnObjsslCheckpointError:
        return []  # a plain timm file: only a backbone, already loaded by the builder
    mapper = D2_PART_MAPPERS.get(ckpt.get("method"))
    parts = mapper(ckpt, o.WHICH) if mapper is not None else {}
    if not parts:
        logger.info("checkpoint method %r pretrains no detector parts: FPN and heads start from scratch",
                    ckpt.get("method"))
        return []
    kept = _chosen_parts(parts, choice)
    if len(kept) < len(parts):
        logger.info("--parts %s: %d of the %d pretrained detector-part tensors of %r are not loaded "
                    "(they start from scratch)", choice, len(parts) - len(kept), len(parts), ckpt.get("method"))
    parts = kept
    if not parts:
        return []
    target = model.state_dict()
    unknown = sorted(k for k in parts if k not in target)
    bad = sorted(k for k in parts if k in target and tuple(target[k].shape) != tuple(parts[k].shape))
    if unknown or bad:
        raise UserError(
            f"{o.CHECKPOINT}: {ckpt.get('method')} parts do not fit this detector "
            f"(unknown keys {unknown[:3]}, shape mismatches {bad[:3]}); load fewer parts with "
            f"--parts {'backbone' if choice == 'backbone+fpn' else 'backbone+fpn or --parts backbone'} "
            f"(MODEL.OBJSSL.PARTS, now {choice!r})"
        )
    model.load_state_dict(parts, strict=False)
    logger.info("loaded %d detector-part tensors of %r from %s", len(parts), ckpt.get("method"), o.CHECKPOINT)
    return sorted(parts)
