"""The counted fallbacks of ORL's stage-3 sampling (names and order of ``sample["roi_events"]``) and
the batching that totals them.

:func:`collate_neighbour_pairs` batches like :func:`objssl.data.collate.collate_views` and adds each
event's batch total to ``batch["counters"]`` as ``"roi/<name>"``; the trainer keeps the running totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from objssl.data.collate import collate_views

__all__ = ["ROI_EVENTS", "ROI_COUNTER_PREFIX", "collate_neighbour_pairs"]

#: per-sample event counts, in the order of ``sample["roi_events"]``:
#: ``no_boxes`` — the image has no stored box: the intra-RoI box is the whole image;
#: ``jitter_kept_box`` — no jitter was accepted in 200 tries: the second intra box is the first (ORL's rule);
#: ``no_pairs`` — the neighbour has no stored box pair with the image: the inter pair is the intra pair;
#: ``no_neighbour`` — none of the image's neighbours could be read: the inter pair is the intra pair
ROI_EVENTS = ("no_boxes", "jitter_kept_box", "no_pairs", "no_neighbour")

#: ``batch["counters"]`` key of event ``ROI_EVENTS[i]``: ``ROI_COUNTER_PREFIX + ROI_EVENTS[i]``
ROI_COUNTER_PREFIX = "roi/"


def collate_neighbour_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`~objssl.data.collate.collate_views` of samples of
    :class:`objssl.data.roi_pair_views.RoIPairViews`, plus ``counters["roi/<event>"]`` (long scalars)."""
    out = collate_views(samples)
    events = out["roi_events"]
    if events.ndim != 2 or events.shape[1] != len(ROI_EVENTS):
        raise ValueError(f"collate_neighbour_pairs: roi_events must be [B, {len(ROI_EVENTS)}] counts in ROI_EVENTS "
                         f"order {ROI_EVENTS}, got {tuple(events.shape)}")
    totals = events.long().sum(dim=0)
    out["counters"] = {**out.get("counters", {}),
                       **{ROI_COUNTER_PREFIX + key: total for key, total in zip(ROI_EVENTS, totals.unbind())}}
    return out
