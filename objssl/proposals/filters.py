"""Proposal filters: the box rules of SoCo, ORL and UniVIP as small composable functions.

Every primitive filter takes boxes ``float [K, 4]`` (``xyxy``, pixels) and returns the **indices**
of the boxes it keeps (``int64 [M]``, ascending, so proposal order is kept); compose them by
indexing, ``boxes[idx]``. The presets return the filtered boxes ``float [M, 4]`` with ``M >= 1``
(each method's fallback guarantees one box).

Box width is ``x2 - x1`` (pixels), as in torchvision; SoCo's and ORL's ``[x, y, w, h]`` rules carry
over unchanged.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_area, nms

__all__ = [
    "min_size",
    "aspect_range",
    "relative_size",
    "max_count",
    "iou_dedup",
    "soco_filter",
    "orl_filter",
    "univip_filter",
    "whole_image_box",
    "FILTER_PRESETS",
    "filter_preset",
]


def _wh(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    boxes = boxes.reshape(-1, 4).float()
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def _where(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).reshape(-1)


def min_size(boxes: torch.Tensor, w: float, h: float) -> torch.Tensor:
    """Indices of boxes at least ``w`` wide and ``h`` high. ``[K, 4] -> int64 [M]``."""
    bw, bh = _wh(boxes)
    return _where((bw >= w) & (bh >= h))


def aspect_range(boxes: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Indices of boxes with ``max(w/h, h/w) <= max_ratio`` (degenerate boxes are dropped)."""
    if max_ratio < 1:
        raise ValueError(f"aspect_range: max_ratio must be >= 1, got {max_ratio}")
    bw, bh = _wh(boxes)
    ok = (bw > 0) & (bh > 0)
    ratio = torch.maximum(bw, bh) / torch.minimum(bw, bh).clamp_min(1e-12)
    return _where(ok & (ratio <= max_ratio))


def relative_size(
    boxes: torch.Tensor, image_wh: tuple[float, float], lo: float, hi: float
) -> torch.Tensor:
    """Indices of boxes with ``lo <= sqrt(w*h) / sqrt(W*H) <= hi`` (SoCo's size rule)."""
    W, H = image_wh
    if W <= 0 or H <= 0:
        raise ValueError(f"relative_size: image_wh must be positive, got {image_wh}")
    rel = box_area(boxes.reshape(-1, 4).float()).clamp_min(0).sqrt() / math.sqrt(W * H)
    return _where((rel >= lo) & (rel <= hi))


def max_count(boxes: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n`` boxes (proposal order is the ranking)."""
    if n < 0:
        raise ValueError(f"max_count: n must be >= 0, got {n}")
    return torch.arange(min(int(n), boxes.reshape(-1, 4).shape[0]))


def iou_dedup(boxes: torch.Tensor, thresh: float) -> torch.Tensor:
    """Greedy de-duplication in proposal order: keep a box unless its IoU with a box **already
    kept** is ``> thresh``.

    This is non-maximum suppression with the proposal order as the score, so it runs on
    :func:`torchvision.ops.nms` (a suppressed box never suppresses others, which is the point: the
    UniVIP reproduction compared against all earlier boxes, kept or not).
    ``[K, 4] -> int64 [M]`` ascending.
    """
    boxes = boxes.reshape(-1, 4).float()
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order_score = -torch.arange(boxes.shape[0], dtype=torch.float32)  # earlier = higher
    return torch.sort(nms(boxes, order_score, float(thresh))).values


def whole_image_box(image_wh: tuple[float, float]) -> torch.Tensor:
    """``[[0, 0, W, H]]`` as ``float32 [1, 4]``."""
    W, H = image_wh
    return torch.tensor([[0.0, 0.0, float(W), float(H)]])


def _chain(boxes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return boxes[idx]


def soco_filter(boxes: torch.Tensor, image_wh: tuple[float, float]) -> torch.Tensor:
    """SoCo's ``ratio3size0308post`` filter. ``[K, 4] -> [M >= 1, 4]``.

    Keep boxes with ``w, h >= 32``, ``1/3 <= w/h <= 3`` and ``0.3 <= sqrt(wh)/sqrt(WH) <= 0.8``.
    If none survive: ``w, h >= 32`` with the aspect rule (SoCo's ``filter_ratio``, which keeps the
    32-px minimum); then ``w, h >= 32`` only; then the whole image.
    """
    boxes = boxes.reshape(-1, 4).float()
    b = _chain(boxes, min_size(boxes, 32, 32))
    b = _chain(b, aspect_range(b, 3.0))
    b = _chain(b, relative_size(b, image_wh, 0.3, 0.8))
    if len(b):
        return b
    sized = _chain(boxes, min_size(boxes, 32, 32))
    b = _chain(sized, aspect_range(sized, 3.0))
    if len(b):
        return b
    if len(sized):
        return sized
    return whole_image_box(image_wh)


def orl_filter(
    boxes: torch.Tensor, image_wh: tuple[float, float], *, top_n: int = 100
) -> torch.Tensor:
    """ORL's stage-2 ``box_filter``. ``[K, 4] -> [M >= 1, 4]``.

    In proposal order: ``w, h >= 96``; aspect ``<= 3``; greedy IoU ``<= 0.5`` against kept boxes;
    the first ``top_n``. If none survive, the first raw box (the whole image if there is none).
    """
    boxes = boxes.reshape(-1, 4).float()
    b = _chain(boxes, min_size(boxes, 96, 96))
    b = _chain(b, aspect_range(b, 3.0))
    b = _chain(b, iou_dedup(b, 0.5))
    b = _chain(b, max_count(b, top_n))
    if len(b):
        return b
    return boxes[:1] if len(boxes) else whole_image_box(image_wh)


def univip_filter(boxes: torch.Tensor, image_wh: tuple[float, float]) -> torch.Tensor:
    """UniVIP's proposal filter. ``[K, 4] -> [M >= 1, 4]``.

    ``w, h >= 64``; aspect ``<= 3``; greedy IoU ``<= 0.5`` against kept boxes. If none survive,
    the whole image (the view sampler then falls back to random boxes as UniVIP does).
    """
    boxes = boxes.reshape(-1, 4).float()
    b = _chain(boxes, min_size(boxes, 64, 64))
    b = _chain(b, aspect_range(b, 3.0))
    b = _chain(b, iou_dedup(b, 0.5))
    return b if len(b) else whole_image_box(image_wh)


#: the method presets by the name a config uses (``stage2.box_filter: orl``)
FILTER_PRESETS = {"soco": soco_filter, "orl": orl_filter, "univip": univip_filter}


def filter_preset(name: str):
    """The preset filter called ``name`` (a key of :data:`FILTER_PRESETS`); ValueError naming them."""
    try:
        return FILTER_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown box filter {name!r}; known: {', '.join(sorted(FILTER_PRESETS))}") from None
