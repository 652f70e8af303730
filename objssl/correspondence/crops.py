"""Box crops at a fixed size: objssl's batched ``roi_align`` path and ORL's crop-then-resize.

ORL crops each box from the PIL image and resizes it to 224×224 bilinear, one box at a time
(``ORL:openselfsup/datasets/correspondence.py``). :func:`roi_crops` cuts all boxes of an image in
one :func:`torchvision.ops.roi_align` call over the normalised full-resolution image tensor with
``aligned=True`` (pixel centres at half-integers, as PIL) and an adaptive sampling ratio
(``ceil(box side / 224)`` bilinear samples per output pixel and axis), which averages over the
source pixels a downscaling resize covers instead of point-sampling them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align
from torchvision.transforms import v2

from objssl.correspondence.features import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["image_tensor", "roi_crops", "pil_crops"]

_TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def image_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB → ImageNet-normalised ``float [3, H, W]`` (full resolution)."""
    return _TO_TENSOR(img)


def roi_crops(image: torch.Tensor, boxes: torch.Tensor, size: int = 224) -> torch.Tensor:
    """``image [3, H, W]`` (normalised), ``boxes [M, 4]`` xyxy pixels → ``[M, 3, size, size]``."""
    boxes = boxes.reshape(-1, 4).to(image.dtype)
    if boxes.shape[0] == 0:
        return image.new_zeros(0, 3, size, size)
    return roi_align(image[None], [boxes], output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)


def pil_crops(img: Image.Image, boxes: np.ndarray, size: int = 224) -> torch.Tensor:
    """ORL's crops: ``img.crop(box).resize((size, size), BILINEAR)`` per box, then normalised."""
    out = [_TO_TENSOR(img.crop(tuple(int(v) for v in b)).resize((size, size), Image.BILINEAR))
           for b in np.asarray(boxes).reshape(-1, 4)]
    return torch.stack(out) if out else torch.zeros(0, 3, size, size)
