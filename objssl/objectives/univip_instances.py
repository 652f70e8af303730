"""UniVIP's instance crops, cut on the training device: K boxes per image from the original image
(sent by the loader as a fixed canvas, :mod:`objssl.data.views.instances`), resized to ``size × size``
by one batched ``torchvision.ops.roi_align``, flipped per instance, then normalised."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from objssl.ops import boxes_to_rois

__all__ = ["crop_instances", "PIXEL_MEAN", "PIXEL_STD"]

# the views' ImageNet normalisation (objssl.data.transforms.IMAGENET_MEAN / _STD; the data layer sits
# above this one, and a test checks the two agree)
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def crop_instances(canvas: Tensor, boxes: Tensor, flips: Tensor, size: int) -> Tensor:
    """``float32 [B·K, 3, size, size]`` normalised instance crops, in batch-then-box order.

    Args:
        canvas: ``uint8 [B, 3, S, S]`` each image on its canvas (colour already drawn per image), or
            float in ``[0, 1]`` (a canvas made on the training device).
        boxes: ``[B, K, 4]`` xyxy in canvas pixels; ``flips``: ``bool [B, K]`` per-instance flips.
        size: side of the crops (96 in UniVIP).

    ``roi_align`` with ``aligned=True`` (pixel ``i`` covers ``[i, i + 1)``) and its adaptive sampling
    (``ceil(box / size)`` points per output cell), so large boxes are averaged, not aliased. Bilinear
    weights are convex, so the crops stay in ``[0, 1]`` before normalisation (nothing to clamp).
    """
    B, K = boxes.shape[:2]
    x = canvas.float() if canvas.is_floating_point() else canvas.float() / 255.0
    crops = roi_align(x, boxes_to_rois(boxes.float()), output_size=(size, size), spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
    crops = torch.where(flips.reshape(B * K, 1, 1, 1), crops.flip(-1), crops)
    mean = torch.tensor(PIXEL_MEAN, device=crops.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=crops.device).view(1, 3, 1, 1)
    return (crops - mean) / std
