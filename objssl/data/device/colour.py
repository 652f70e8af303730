"""Colour ops on a batch of float images in ``[0, 1]`` (``[B, 3, H, W]``), with one factor or flag
per sample.

The formulas are torchvision's (``torchvision.transforms.v2.functional``) broadcast over a per-sample
factor: brightness scales, contrast blends with the mean of the image's grey level, saturation blends
with the grey image, hue shifts H in HSV (H in ``[0, 1)``, wrapped), grey is
``0.2989 R + 0.587 G + 0.114 B``, every blend is clamped to ``[0, 1]``. torchvision's kernels take one
Python float per call, so a per-sample batch cannot go through them in one call;
``kornia.augmentation.ColorJitter`` draws one jitter order per batch and uses grey weights of 0.299
(docs/device_views.md), so the formulas are written here once, tested against torchvision's kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "SOLARIZE_THRESHOLD",
    "grey_level",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "random_grayscale",
    "random_solarize",
]

#: the loader path solarizes uint8 images at 128: ``x >= 128`` is ``x / 255 >= 128 / 255``
SOLARIZE_THRESHOLD = 128 / 255


def _per_sample(factor: Tensor, images: Tensor) -> Tensor:
    return factor.to(images.dtype).reshape(-1, 1, 1, 1)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    return (a * ratio + b * (1.0 - ratio)).clamp_(0.0, 1.0)


def grey_level(images: Tensor) -> Tensor:
    """``[B, 1, H, W]`` the ITU-R 601 grey level torchvision uses."""
    r, g, b = images.unbind(dim=-3)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(-3)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """``images * factor`` per sample, clamped."""
    return (images * _per_sample(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend of each image with the mean of its grey level."""
    mean = grey_level(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, _per_sample(factor, images))


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend of each image with its grey image."""
    return _blend(images, grey_level(images), _per_sample(factor, images))


def _rgb_to_hsv(images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = images.unbind(dim=-3)
    maxc = images.amax(dim=-3)
    minc = images.amin(dim=-3)
    span = maxc - minc
    grey = span == 0  # H and S are 0 for a grey pixel (no division by zero)
    s = span / torch.where(grey, torch.ones_like(maxc), maxc)
    d = torch.where(grey, torch.ones_like(span), span)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(grey, torch.zeros_like(h), h)
    h = (h / 6.0 + 1.0).fmod(1.0)
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long().remainder(6)
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # (R, G, B) of each sector 0..5, as indices into (v, p, q, t)
    table = torch.tensor([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]], device=h.device)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    index = table[sector].movedim(-1, -3)  # [..., 3, H, W]
    return vpqt.gather(-3, index)


def adjust_hue(images: Tensor, factor: Tensor) -> Tensor:
    """Shift of H in HSV by ``factor`` (in turns, ``[-0.5, 0.5]``) per sample."""
    h, s, v = _rgb_to_hsv(images)
    h = (h + factor.to(images.dtype).reshape(-1, 1, 1)).remainder(1.0)
    return _hsv_to_rgb(h, s, v)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: Tensor, apply: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """``v2.ColorJitter`` with per-sample factors and order.

    Args:
        images: ``float [B, 3, H, W]`` in ``[0, 1]``.
        apply: ``bool [B]`` which samples are jittered.
        factors: ``float [B, 4]`` brightness, contrast, saturation, hue.
        order: ``long [B, 4]`` op index (0..3, in that list) run at each of the four steps.
    """
    out = images.clone()
    for step in range(4):
        for op_id, op in enumerate(_JITTER_OPS):
            rows = torch.nonzero(apply & (order[:, step] == op_id)).reshape(-1)
            if len(rows):
                out[rows] = op(out[rows], factors[rows, op_id])
    return out


def random_grayscale(images: Tensor, flags: Tensor) -> Tensor:
    """Grey (three equal channels) where ``flags`` (``bool [B]``)."""
    return torch.where(flags.reshape(-1, 1, 1, 1), grey_level(images).expand_as(images), images)


def random_solarize(images: Tensor, flags: Tensor, threshold: float = SOLARIZE_THRESHOLD) -> Tensor:
    """Values at or above ``threshold`` inverted (``1 - x``) where ``flags`` (``bool [B]``)."""
    hit = flags.reshape(-1, 1, 1, 1) & (images >= threshold)
    return torch.where(hit, 1.0 - images, images)
