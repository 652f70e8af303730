"""Pretraining methods: short compositions of a backbone, objective terms and an EMA target."""

from collections.abc import Mapping
from typing import Any

from torch import nn

from objssl.errors import UserError
from objssl.methods.base import Method, augment_on_of, transform_of
from objssl.methods.byol import BYOL
from objssl.methods.compose import Compose
from objssl.methods.objective_method import ObjectiveMethod
from objssl.methods.orl import ORL
from objssl.methods.slotcon import SlotCon
from objssl.methods.soco import SoCo, SoCoC4, SoCoStar
from objssl.methods.univip import UniVIP
from objssl.registry import METHODS

__all__ = ["Method", "ObjectiveMethod", "BYOL", "SlotCon", "SoCo", "SoCoStar", "SoCoC4", "UniVIP", "ORL", "Compose",
           "create_method", "method_from_checkpoint", "method_transform"]


def create_method(name: str, backbone: nn.Module, **kwargs: Any) -> Method:
    """Build a registered method around ``backbone`` (``objssl list methods`` names them)."""
    return METHODS.build(name, backbone, **kwargs)


def method_transform(method_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None = None) -> Any:
    """The exact per-image transform ``method_cfg`` trains with, without building the model.

    With ``data_cfg["proposals"]`` set, boxes are looked up in it as in training; without, a box method's
    transform takes them per call: ``transform(image, {"path": ...}, boxes=Tensor[M, 4])``.
    """
    cls = METHODS.get(method_cfg["name"])
    cfg = {k: v for k, v in method_cfg.items() if k != "name"}
    cls.check_config(method_cfg)
    proposals = None
    if data_cfg and data_cfg.get("proposals") and cls.needs_proposals(method_cfg):
        proposals = cls.open_proposals(data_cfg, method_cfg["name"])
    return transform_of(cls, cfg, proposals, augment_on_of(data_cfg))


def method_from_checkpoint(ckpt: dict[str, Any]) -> Method:
    """Rebuild the method an objssl checkpoint was trained with and load its weights (strictly).

    ``ckpt`` is :func:`objssl.checkpoint.load_checkpoint`'s result; the model is on the CPU in
    eval mode. No weights are read from anywhere else. A plugin method works once its package is installed.
    """
    from objssl.backbones import create_backbone

    cfg = ckpt.get("config") or {}
    if "method" not in cfg or "backbone" not in cfg:
        raise UserError("checkpoint has no training config; it cannot be rebuilt (was it written by objssl?)")
    bcfg = cfg["backbone"]
    backbone = create_backbone(bcfg["name"], out_indices=bcfg.get("out_indices"), **(bcfg.get("kwargs") or {}))
    # "proposals" was a method key before it moved to data.proposals
    kwargs = {k: v for k, v in cfg["method"].items() if k not in ("name", "proposals")}
    method = create_method(cfg["method"]["name"], backbone, **kwargs)
    method.load_state_dict(ckpt["model"], strict=True)
    return method.eval()
