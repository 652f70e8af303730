"""View augmentation as batched ops on the training device (docs/device_views.md).

The loader decodes and draws every random parameter of every view per sample
(:mod:`~objssl.data.device.params`, the same torch RNG calls as the torchvision loader path); the
device applies them to the whole batch in one step per view (:mod:`~objssl.data.device.pipeline`),
each sample with its own draw.

Modules, one job each: :mod:`~objssl.data.device.params` (the per-sample parameters and their
drawing), :mod:`~objssl.data.device.geometry` (padded batches, crop + resize, flips),
:mod:`~objssl.data.device.colour` (jitter, grayscale, solarize), :mod:`~objssl.data.device.blur`
(per-sample Gaussian blur), :mod:`~objssl.data.device.pipeline` (one view of a batch) and
:mod:`~objssl.data.device.boxes` (boxes and overlaps through the same parameters, in the loader).
"""

from objssl.data.device.boxes import boxes_in_view, overlaps_in_views
from objssl.data.device.geometry import pad_images
from objssl.data.device.params import (
    ColourParams,
    ViewBatch,
    ViewParams,
    draw_colour,
    draw_image_view,
    draw_image_views,
)
from objssl.data.device.pipeline import DeviceView, apply_view, apply_views

__all__ = [
    "ColourParams",
    "ViewParams",
    "ViewBatch",
    "draw_colour",
    "draw_image_view",
    "draw_image_views",
    "pad_images",
    "DeviceView",
    "apply_view",
    "apply_views",
    "boxes_in_view",
    "overlaps_in_views",
]
