"""Losses: tensor in, tensor out, shapes in each docstring."""

from objssl.losses.byol import BYOLLoss, byol_loss

__all__ = ["BYOLLoss", "byol_loss"]
