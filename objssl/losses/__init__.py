"""Losses: tensor in, tensor out, shapes in each docstring."""

from objssl.losses.box_regression import MaskedRegressionLoss, correspondence_matrix, masked_regression_loss
from objssl.losses.byol import BYOLLoss, byol_loss
from objssl.losses.pixel_distill import PixelDistillLoss, pixel_distill_loss
from objssl.losses.slot_contrast import SlotInfoNCELoss, present_slots, slot_infonce

__all__ = [
    "BYOLLoss", "byol_loss", "PixelDistillLoss", "pixel_distill_loss",
    "SlotInfoNCELoss", "slot_infonce", "present_slots",
    "MaskedRegressionLoss", "masked_regression_loss", "correspondence_matrix",
]
