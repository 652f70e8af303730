"""Boxes of a device-side view, computed in the loader from the view's parameters alone (boxes are
cheap; only pixels go to the device): proposal boxes through crop + resize + flip, and each pair's
overlap, by the same ``torchvision.transforms.v2`` calls as the loader path's
(:class:`objssl.data.views.BoxAwareViews`), so both paths give identical boxes for the same parameters."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from objssl.data.device.params import ViewParams
from objssl.data.views.box_geometry import boxes_in_crop_view, overlap_in_view

__all__ = ["boxes_in_view", "overlaps_in_views"]


def boxes_in_view(boxes: Tensor, params: ViewParams, size: tuple[int, int], image_hw: tuple[int, int]) -> Tensor:
    """``float [M, 4]`` boxes (xyxy, image pixels) in the view's pixels: cropped, resized to ``size``,
    flipped with the view and clamped to it (:func:`objssl.data.views.box_geometry.boxes_in_crop_view`)."""
    return boxes_in_crop_view(boxes, params.crop, params.flip, size, image_hw)


def overlaps_in_views(params: Sequence[ViewParams], sizes: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """``(float [V, V, 4], bool [V, V])``: crop ``i ∩`` crop ``j`` in view ``i``'s pixels and whether
    it is non-empty (:func:`objssl.data.views.box_geometry.overlap_in_view`)."""
    crops = torch.tensor([p.crop for p in params], dtype=torch.float32)
    overlap = torch.stack([overlap_in_view(crops[i], crops, p.flip, tuple(s)) for i, (p, s) in enumerate(zip(params, sizes))])
    valid = (overlap[..., 2] > overlap[..., 0]) & (overlap[..., 3] > overlap[..., 1])
    return overlap, valid
