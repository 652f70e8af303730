"""Drawing helpers on ``torchvision.utils.draw_bounding_boxes``: colours that stay with a box identity
across pictures, views laid out side by side, PNG output."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["box_colors", "to_uint8_image", "draw_boxes", "side_by_side", "save_png"]


def box_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct, saturated RGB colours; colour ``i`` is the same for any ``n > i``.

    Hues step by the golden ratio, so neighbouring identities never get similar colours.
    """
    out = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0 if i % 2 == 0 else 0.8)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def to_uint8_image(image: Tensor | np.ndarray | Image.Image, *, normalized: bool = False) -> Tensor:
    """An image as ``uint8 [3, H, W]``: from a PIL image, an ``H×W×3`` uint8 array, a float
    ``[3, H, W]`` tensor in [0, 1], or (``normalized=True``) an ImageNet-normalised view tensor."""
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 image array, got shape {image.shape}")
        return torch.as_tensor(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image tensor, got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image
    x = image.detach().float().cpu()
    if normalized:
        x = x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def draw_boxes(
    image: Tensor | np.ndarray | Image.Image,
    boxes: Tensor,
    *,
    colors: Sequence[tuple[int, int, int]] | None = None,
    labels: Sequence[str] | None = None,
    width: int = 2,
    normalized: bool = False,
) -> Tensor:
    """``image`` with ``boxes`` (``float [K, 4]`` xyxy pixels) drawn on it, as ``uint8 [3, H, W]``."""
    img = to_uint8_image(image, normalized=normalized)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return img
    colors = list(colors) if colors is not None else box_colors(len(boxes))
    return draw_bounding_boxes(img, boxes, labels=list(labels) if labels else None, colors=colors, width=width)


def side_by_side(images: Sequence[Tensor], *, gap: int = 8, background: int = 255) -> Tensor:
    """``uint8 [3, H_i, W_i]`` images in a row, top-aligned, ``gap`` pixels apart."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    h = max(int(im.shape[1]) for im in images)
    w = sum(int(im.shape[2]) for im in images) + gap * (len(images) - 1)
    canvas = torch.full((3, h, w), background, dtype=torch.uint8)
    x = 0
    for im in images:
        canvas[:, : im.shape[1], x: x + im.shape[2]] = im
        x += int(im.shape[2]) + gap
    return canvas


def save_png(image: Tensor, path: str) -> str:
    """Write ``uint8 [3, H, W]`` as a PNG (folders created); returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format="PNG")
    return path
