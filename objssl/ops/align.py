"""Align dense maps of two views on their shared image region (SlotCon's and UniVIP's ``invaug``)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["align_to_overlap"]


def align_to_overlap(maps: Tensor, boxes: Tensor, flips: Tensor, view_size: tuple[int, int]) -> Tensor:
    """Resample each map on its view's overlap box and undo the view's flip.

    After this, pixel ``(i, j)`` of view 1's and view 2's aligned maps look at the same image point.

    Args:
        maps: ``[B, C, h, w]`` maps of one view (e.g. prototype scores).
        boxes: ``[B, 4]`` overlap box of each sample in the view's pixels (``xyxy``; from
            :class:`objssl.data.views.BoxAwareViews`, ``overlap[:, i, j]``).
        flips: ``bool [B]``, whether the view was flipped.
        view_size: ``(H, W)`` of the view in pixels.

    Returns:
        ``[B, C, h, w]`` (``roi_align`` with ``aligned=True`` to the map's own size).
    """
    B, C, h, w = maps.shape
    if boxes.shape != (B, 4):
        raise ValueError(f"align_to_overlap: boxes must be [{B}, 4], got {tuple(boxes.shape)}")
    # box coordinates in map cells; x and y may scale differently for non-square views
    scale = boxes.new_tensor([w / view_size[1], h / view_size[0], w / view_size[1], h / view_size[0]])
    per_image = list((boxes * scale).to(maps.dtype).unsqueeze(1))  # one [1, 4] box per map
    aligned = roi_align(maps, per_image, output_size=(h, w), spatial_scale=1.0, aligned=True)
    flips = flips.to(device=maps.device, dtype=torch.bool).view(B, 1, 1, 1)
    return torch.where(flips, aligned.flip(-1), aligned)
