"""Pretraining methods: short compositions of backbone, heads, losses and an EMA target."""

from typing import Any

from torch import nn

from objssl.methods.base import Method
from objssl.methods.byol import BYOL
from objssl.methods.slotcon import SlotCon
from objssl.registry import METHODS

__all__ = ["Method", "BYOL", "SlotCon", "create_method"]


def create_method(name: str, backbone: nn.Module, **kwargs: Any) -> Method:
    """Build a registered method around ``backbone`` (``objssl list methods`` names them)."""
    return METHODS.build(name, backbone, **kwargs)
