"""Pretraining methods: short compositions of backbone, heads, losses and an EMA target."""

from typing import Any

from torch import nn

from objssl.methods.base import Method
from objssl.methods.byol import BYOL
from objssl.methods.slotcon import SlotCon
from objssl.methods.soco import SoCo, SoCoC4, SoCoStar
from objssl.registry import METHODS

__all__ = ["Method", "BYOL", "SlotCon", "SoCo", "SoCoStar", "SoCoC4", "create_method", "method_from_checkpoint"]


def create_method(name: str, backbone: nn.Module, **kwargs: Any) -> Method:
    """Build a registered method around ``backbone`` (``objssl list methods`` names them)."""
    return METHODS.build(name, backbone, **kwargs)


def method_from_checkpoint(ckpt: dict[str, Any]) -> Method:
    """Rebuild the method an objssl checkpoint was trained with and load its weights (strictly).

    ``ckpt`` is :func:`objssl.export.common.load_checkpoint`'s result; the model is on the CPU in
    eval mode. No weights are read from anywhere else.
    """
    from objssl.backbones import create_backbone
    from objssl.errors import UserError

    cfg = ckpt.get("config") or {}
    if "method" not in cfg or "backbone" not in cfg:
        raise UserError("checkpoint has no training config; it cannot be rebuilt (was it written by objssl?)")
    bcfg = cfg["backbone"]
    backbone = create_backbone(bcfg["name"], out_indices=bcfg.get("out_indices"), **(bcfg.get("kwargs") or {}))
    kwargs = {k: v for k, v in cfg["method"].items() if k not in ("name", "proposals")}
    method = create_method(cfg["method"]["name"], backbone, **kwargs)
    method.load_state_dict(ckpt["model"], strict=True)
    return method.eval()
