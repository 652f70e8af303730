"""Batched ``[B, K, 4]`` boxes with a validity mask and the ``[N, 5]`` RoI rows of torchvision.ops."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["boxes_to_rois", "rois_to_boxes"]


def boxes_to_rois(boxes: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[B, K, 4]`` boxes (+ ``bool [B, K]`` mask) → ``[N, 5]`` rows ``(batch index, x1, y1, x2, y2)``
    for :func:`torchvision.ops.roi_align`, valid boxes only, in batch-then-box order."""
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes_to_rois: expected boxes [B, K, 4], got {tuple(boxes.shape)}")
    B, K = boxes.shape[:2]
    batch = torch.arange(B, device=boxes.device, dtype=boxes.dtype)[:, None, None].expand(B, K, 1)
    rois = torch.cat([batch, boxes], dim=-1)
    if mask is None:
        return rois.reshape(B * K, 5)
    if mask.shape != (B, K):
        raise ValueError(f"boxes_to_rois: mask shape {tuple(mask.shape)} does not match boxes {(B, K)}")
    return rois[mask.bool()]


def rois_to_boxes(rois: Tensor, batch_size: int, k: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`boxes_to_rois`: ``[N, 5]`` → ``([B, K, 4] boxes, bool [B, K] mask)``.

    Rows of one image fill its first slots in order; more than ``k`` rows for an image is an error.
    """
    b = rois[:, 0].long()
    counts = torch.bincount(b, minlength=batch_size)
    if len(counts) > batch_size or (counts > k).any():
        raise ValueError(f"rois_to_boxes: an image has more than k={k} RoIs or a batch index >= {batch_size}")
    order = torch.argsort(b, stable=True)
    b = b[order]
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(b), device=rois.device) - starts[b]
    boxes = rois.new_zeros(batch_size, k, 4)
    mask = torch.zeros(batch_size, k, dtype=torch.bool, device=rois.device)
    boxes[b, slot] = rois[order, 1:]
    mask[b, slot] = True
    return boxes, mask
