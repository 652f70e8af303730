"""Geometry of device-side views: a padded batch of decoded images, crop + resize per sample, flips.

Crop + resize has two methods:

* ``"roi_align"`` (bilinear only): one ``torchvision.ops.roi_align`` call (``aligned=True``) for the
  whole batch. Each output pixel averages ``ceil(crop side / output side)`` bilinear samples per
  axis over its footprint (``sampling_ratio=0``). Upsampling (crop smaller than the view) is then
  exactly bilinear interpolation; downsampling is a box pre-filter where torchvision's
  ``antialias=True`` uses a triangle twice as wide, so the two differ at the interpolation level
  (a slightly sharper view; figures in docs/device_views.md and tests/data/device/test_geometry.py).
* ``"per_sample"``: ``torchvision.transforms.v2.functional.resized_crop`` (antialiased) per sample,
  the loader path's call; used for bicubic (roi_align has no bicubic) and wherever the exact result
  matters more than one kernel launch per sample.

Images of different sizes share one ``[B, 3, H, W]`` tensor (:func:`pad_images`); the row and the
column just past each image repeat its last ones, so bilinear samples at an image's right or bottom
edge (which reach at most one pixel beyond it) see the edge value, as torchvision's clamping does,
rather than the padding (zeros).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["RESIZE_METHODS", "pad_images", "resized_crop", "horizontal_flip"]

RESIZE_METHODS = ("roi_align", "per_sample")


def pad_images(images: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """``uint8 [3, h_i, w_i]`` images → ``(uint8 [B, 3, H, W], long [B, 2] (h_i, w_i))``: zero-padded,
    with one repeated edge row and column past each image (module docstring)."""
    if not images:
        raise ValueError("pad_images: no images")
    H = max(int(im.shape[-2]) for im in images)
    W = max(int(im.shape[-1]) for im in images)
    out = torch.zeros(len(images), 3, H, W, dtype=images[0].dtype, device=images[0].device)
    for i, im in enumerate(images):
        h, w = int(im.shape[-2]), int(im.shape[-1])
        out[i, :, :h, :w] = im
        if h < H:
            out[i, :, h, :w] = im[:, h - 1, :]
        if w < W:
            out[i, :, : min(h + 1, H), w] = out[i, :, : min(h + 1, H), w - 1]
    sizes = torch.tensor([tuple(im.shape[-2:]) for im in images], dtype=torch.long, device=images[0].device)
    return out, sizes


def resized_crop(
    images: Tensor,
    crops: Tensor,
    size: tuple[int, int],
    *,
    interpolation: str = "bilinear",
    method: str = "roi_align",
) -> Tensor:
    """Each sample's crop resized to ``size`` (``(h, w)``).

    Args:
        images: ``float [B, 3, H, W]`` in ``[0, 1]`` (see :func:`pad_images`).
        crops: ``float [B, 4]`` xyxy in source pixels (integer-valued, inside each image).
        interpolation: ``"bilinear"`` or ``"bicubic"`` (bicubic always runs ``"per_sample"``;
            its overshoot is clamped to ``[0, 1]``, as the loader's uint8 pixels are).
        method: ``"roi_align"`` or ``"per_sample"`` (module docstring).

    Returns:
        ``float [B, 3, h, w]``.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resized_crop: method must be one of {RESIZE_METHODS}, got {method!r}")
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"resized_crop: interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    if interpolation == "bilinear" and method == "roi_align":
        rois = torch.cat([torch.arange(len(crops), device=crops.device, dtype=images.dtype)[:, None],
                          crops.to(images.dtype)], dim=1)
        return roi_align(images, rois, output_size=list(size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    mode = InterpolationMode(interpolation)
    out = torch.empty(len(crops), images.shape[1], *size, dtype=images.dtype, device=images.device)
    for i, (x1, y1, x2, y2) in enumerate(crops.round().long().tolist()):
        out[i] = TF.resized_crop(images[i], y1, x1, y2 - y1, x2 - x1, list(size), interpolation=mode, antialias=True)
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out


def horizontal_flip(images: Tensor, flags: Tensor) -> Tensor:
    """Samples with ``flags`` (``bool [B]``) mirrored left-right."""
    return torch.where(flags.reshape(-1, 1, 1, 1), images.flip(-1), images)
