"""Necks: modules between the backbone's maps and the heads (FPN)."""

from objssl.necks.fpn import FPNNeck

__all__ = ["FPNNeck"]
