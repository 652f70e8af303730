"""Batching of box-aware samples, and the conversion to the ``Tensor[N, 5]`` RoI form of torchvision.ops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from objssl.data.views.events import COUNTER_PREFIX, STAT_KEYS

__all__ = ["collate_views", "boxes_to_rois", "rois_to_boxes"]

#: keys holding one entry per view; batched per view (views may differ in size)
_PER_VIEW = ("views", "boxes")


def collate_views(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples of :class:`objssl.data.views.BoxAwareViews` (or any multi-view transform).

    ``views`` → list (one per view) of ``[B, 3, h_v, w_v]``; ``boxes`` → list of ``[B, K, 4]``;
    every other tensor is stacked with the batch first (``box_mask [B, K]``, ``crops [B, V, 4]``,
    ``overlap [B, V, V, 4]``, ...); other values follow ``default_collate``. Samples of a transform
    without boxes (BYOL's :class:`objssl.data.transforms.MultiViewTransform`) batch exactly as with
    ``default_collate``.

    Samples that carry ``view_events`` (``long [len(STAT_KEYS)]``, the counted fallbacks of
    :class:`~objssl.data.views.BoxAwareViews`) also give ``counters``: ``{"views/<STAT_KEY>": long
    scalar}``, the batch's total of each event (``view_events`` itself is kept, ``[B, 5]``), which
    the trainer adds up over the run.

    Raises:
        ValueError: samples disagree on the number of views, on ``K``, or on a view's size, or
            ``view_events`` does not have one count per :data:`~objssl.data.views.STAT_KEYS` entry.
    """
    if not samples:
        raise ValueError("collate_views: empty batch")
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in _PER_VIEW:
            counts = {len(v) for v in values}
            if len(counts) != 1:
                raise ValueError(f"collate_views: samples have different numbers of {key!r}: {sorted(counts)}")
            per_view = []
            for v in range(len(values[0])):
                shapes = {tuple(x[v].shape) for x in values}
                if len(shapes) != 1:
                    what = "K (boxes per image)" if key == "boxes" else "size"
                    raise ValueError(f"collate_views: {key}[{v}] differs in {what} across samples: {sorted(shapes)}")
                per_view.append(torch.stack([x[v] for x in values]))
            out[key] = per_view
        elif isinstance(values[0], Tensor):
            shapes = {tuple(x.shape) for x in values}
            if len(shapes) != 1:
                raise ValueError(f"collate_views: {key!r} has different shapes across samples: {sorted(shapes)}")
            out[key] = torch.stack(values)
        else:
            out[key] = default_collate(values)
    if "view_events" in out:
        out["counters"] = _event_counters(out["view_events"])
    return out


def _event_counters(view_events: Tensor) -> dict[str, Tensor]:
    """``[B, len(STAT_KEYS)]`` per-sample counts → ``{"views/<key>": long scalar}`` batch totals."""
    if view_events.ndim != 2 or view_events.shape[1] != len(STAT_KEYS):
        raise ValueError(f"collate_views: view_events must be [B, {len(STAT_KEYS)}] counts in STAT_KEYS order "
                         f"{STAT_KEYS}, got {tuple(view_events.shape)}")
    totals = view_events.long().sum(dim=0)
    return {COUNTER_PREFIX + key: total for key, total in zip(STAT_KEYS, totals.unbind())}


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
