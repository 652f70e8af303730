"""Box geometry of box-aware views: intersections, visibility in crops, SoCo's jitter, UniVIP's
random top-up, and boxes mapped into a view (by the same ``torchvision.transforms.v2`` calls as the
pixels, so a box always covers the same content)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_convert, box_iou, clip_boxes_to_image
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "intersect",
    "clamped_area",
    "intersection_area",
    "visible_in_crops",
    "jitter_boxes",
    "resize_boxes",
    "random_boxes_in_region",
    "overlap_in_view",
    "boxes_in_crop_view",
]


def intersect(a: Tensor, b: Tensor) -> Tensor:
    """Intersection rectangles of ``a [..., 4]`` and ``b [..., 4]`` (may be empty: x2 < x1)."""
    return torch.cat([torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])], dim=-1)


def clamped_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes, 0 for an empty or inverted one (``box_area`` assumes valid
    boxes: an inverted box would get a positive area from two negative sides)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """Area of ``a ∩ b`` elementwise (``[...]``), 0 where they do not meet."""
    return clamped_area(intersect(a, b))


def visible_in_crops(boxes: Tensor, crops: Tensor, views: list[int], min_visible: float) -> Tensor:
    """``bool [M]``: box visible enough in every crop ``crops[v]``, ``v`` in ``views``.

    Visible means ``area(box ∩ crop) / area(box) >= min_visible``; 0 means "intersects at all".
    """
    if not len(boxes):
        return torch.zeros(0, dtype=torch.bool)
    area = clamped_area(boxes)  # user boxes may be inverted
    ok = area > 0  # a degenerate box has no visible fraction; it would pass any ">= frac * 0" test
    for v in views:
        inter = intersection_area(boxes, crops[v].expand_as(boxes))
        if min_visible <= 0:
            ok &= inter > 0
        else:
            ok &= inter >= min_visible * area - 1e-4 * area.clamp_min(1)
    return ok


def jitter_boxes(boxes: Tensor, ratio: float, p: float, image_hw: tuple[int, int]) -> Tensor:
    """SoCo's box jitter: with probability ``p`` per box, x1, y1 move by U(-r, r) times w, h and w, h
    scale by 1 + U(-r, r) (``r = ratio``); the result is clipped to the image ``(H, W)``."""
    if ratio <= 0 or not len(boxes):
        return boxes
    xywh = box_convert(boxes, "xyxy", "xywh")
    xy, wh = xywh[:, :2], xywh[:, 2:]
    apply = (torch.rand(len(boxes)) < p)[:, None]
    new_xy = xy + (torch.rand(len(boxes), 2) * 2 - 1) * ratio * wh
    new_wh = wh * (1 + (torch.rand(len(boxes), 2) * 2 - 1) * ratio)
    jittered = clip_boxes_to_image(box_convert(torch.cat([new_xy, new_wh], dim=1), "xywh", "xyxy"), image_hw)
    return torch.where(apply, jittered, boxes)


def resize_boxes(boxes: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Tensor:
    """Boxes of a ``src_hw`` view in a resized ``dst_hw`` copy of it (the v2 resize of the pixels)."""
    bb = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=src_hw)
    return TF.resize(bb, list(dst_hw)).as_subclass(Tensor).float()


def random_boxes_in_region(
    region: Tensor,
    n: int,
    existing: Tensor,
    *,
    min_size: float = 64.0,
    max_aspect: float = 3.0,
    iou_thresh: float = 0.5,
    candidates: int = 100,
) -> Tensor:
    """UniVIP's top-up: ``n`` random boxes inside ``region`` (``[4]``), each with sides >= ``min_size``
    (capped by the region), aspect <= ``max_aspect`` and IoU < ``iou_thresh`` with the boxes kept so far;
    ``candidates`` draws per box, the lowest-IoU one if none qualifies. ``-> float [n, 4]``."""
    from objssl.proposals.builtin import random_boxes

    x1, y1, x2, y2 = (float(v) for v in region)
    rw, rh = x2 - x1, y2 - y1
    kept = existing.reshape(-1, 4).float()
    out = []
    for _ in range(n):  # n <= K (4): a bounded top-up, not a per-box loop in the step
        side = min(min_size, rw, rh)
        lo = min(1.0, side / max(math.sqrt(rw * rh), 1e-6))
        cand = random_boxes(rw, rh, candidates, min_size=side, max_aspect=max_aspect,
                            scale=(lo, 1.0), within=(x1, y1, x2, y2))
        iou = box_iou(cand, kept).max(dim=1).values if len(kept) else torch.zeros(len(cand))
        ok = torch.nonzero(iou < iou_thresh).reshape(-1)
        pick = cand[ok[0]] if len(ok) else cand[iou.argmin()]
        out.append(pick)
        kept = torch.cat([kept, pick[None]])
    return torch.stack(out) if out else torch.zeros(0, 4)


def overlap_in_view(crop_i: Tensor, crop_j: Tensor, flip_i: bool, size_i: tuple[int, int]) -> Tensor:
    """The intersection of crop ``i`` with crop(s) ``j`` in view ``i``'s pixels.

    Args:
        crop_i: ``[4]`` view ``i``'s crop, xyxy in image pixels (integer-valued, as sampled).
        crop_j: ``[4]`` or ``[N, 4]`` other crops, xyxy in image pixels.
        flip_i: whether view ``i`` is horizontally flipped.
        size_i: view ``i``'s ``(height, width)``.

    Returns:
        ``float [4]`` / ``[N, 4]``, xyxy in view ``i`` (mapped by the same v2 resized-crop and flip
        as the pixels); all zeros where the crops do not overlap.
    """
    crop_j = torch.as_tensor(crop_j, dtype=torch.float32)
    inter = intersect(crop_i.float().expand_as(crop_j), crop_j)
    empty = (inter[..., 2] <= inter[..., 0]) | (inter[..., 3] <= inter[..., 1])
    x1, y1, x2, y2 = (int(round(float(c))) for c in crop_i)
    # the canvas only bounds clamping, and every intersection lies inside crop i
    bb = tv_tensors.BoundingBoxes(inter.reshape(-1, 4), format="XYXY", canvas_size=(y2, x2))
    bb = TF.resized_crop(bb, y1, x1, y2 - y1, x2 - x1, list(size_i))
    if flip_i:
        bb = TF.horizontal_flip(bb)
    out = bb.as_subclass(Tensor).reshape(inter.shape).float()
    return torch.where(empty[..., None], torch.zeros_like(out), out)


def boxes_in_crop_view(boxes: Tensor, crop: Tensor | tuple[float, ...], flip: bool, size: tuple[int, int],
                       image_hw: tuple[int, int]) -> Tensor:
    """``float [M, 4]`` boxes (xyxy, image pixels) in a view's pixels: cut to ``crop`` (xyxy, whole
    pixels), resized to ``size`` ``(h, w)``, flipped with the view and clamped to it; the v2 calls a
    view's pixels go through, so a box covers the same content (both view paths use this)."""
    x1, y1, x2, y2 = (int(round(float(c))) for c in crop)
    bb = tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY",
                                  canvas_size=image_hw)
    bb = TF.resized_crop(bb, y1, x1, y2 - y1, x2 - x1, list(size))
    if flip:
        bb = TF.horizontal_flip(bb)
    return TF.clamp_bounding_boxes(bb).as_subclass(Tensor).float()
