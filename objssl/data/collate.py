"""Batching of multi-view samples (:func:`collate_views`), with the batch totals of counted fallbacks.

The ``[B, K, 4]`` boxes of a batch become torchvision.ops RoIs with :func:`objssl.ops.boxes_to_rois`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from objssl.data.device.geometry import pad_images
from objssl.data.views.events import COUNTER_PREFIX, STAT_KEYS

__all__ = ["collate_views"]

#: keys holding one entry per view; batched per view (views may differ in size)
_PER_VIEW = ("views", "boxes", "cutout")


def collate_views(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples of :class:`objssl.data.views.BoxAwareViews` (or any multi-view transform).

    ``views`` → list (one per view) of ``[B, 3, h_v, w_v]``; ``boxes`` → list of ``[B, K, 4]``;
    every other tensor is stacked with the batch first (``box_mask [B, K]``, ``crops [B, V, 4]``,
    ``overlap [B, V, V, 4]``, ...); other values follow ``default_collate``. Samples of a transform
    without boxes (BYOL's :class:`objssl.data.transforms.MultiViewTransform`) batch exactly as with
    ``default_collate``.

    Device-mode samples (views made on the training device, :mod:`objssl.data.device.augment`):
    ``source`` images of different sizes → one ``uint8 [B, 3, H, W]`` (:func:`~objssl.data.device.geometry.pad_images`)
    and ``source_hw`` ``long [B, 2]``; ``view_params`` → one dict of stacked parameters per view;
    ``encoded`` (bytes to decode on the device) and ``encoded_path`` → lists.

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
        if key == "source":
            out["source"], out["source_hw"] = pad_images(values)
        elif key in ("encoded", "encoded_path"):  # bytes decoded on the device, and their names
            out[key] = list(values)
        elif key == "view_params":
            if len({len(v) for v in values}) != 1:
                raise ValueError("collate_views: samples have different numbers of 'view_params'")
            out[key] = [{name: torch.stack([v[view][name] for v in values]) for name in values[0][view]}
                        for view in range(len(values[0]))]
        elif key in _PER_VIEW:
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
