"""The counted fallbacks of ORL's stage-3 sampling (names and order of ``sample["roi_events"]``) and
the batching that totals them.

:func:`collate_neighbour_pairs` batches like :func:`objssl.data.collate.collate_views` and adds each
event's batch total to ``batch["counters"]`` as ``"roi/<name>"``; the trainer keeps the running totals.
Device-mode samples' neighbour images are padded as their images are (``neighbour_source``,
``neighbour_source_hw``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from objssl.data.collate import collate_views
from objssl.data.device.geometry import pad_images

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
    :class:`objssl.data.roi_pair_views.RoIPairViews`, plus ``counters["roi/<event>"]`` (long scalars).

    Device-mode samples: ``source`` is padded by ``collate_views`` (``uint8 [B, 3, H, W]``, ``source_hw``),
    ``neighbour_source`` the same way into ``neighbour_source`` ``uint8 [B, 3, H', W']`` and
    ``neighbour_source_hw`` ``long [B, 2]`` (:func:`~objssl.data.device.geometry.pad_images`);
    ``patch_params`` becomes one dict of stacked parameters per patch and ``patch_source`` ``long [B, 4]``.
    """
    neighbours = None
    if samples and "neighbour_source" in samples[0]:
        neighbours = [s["neighbour_source"] for s in samples]
        samples = [{k: v for k, v in s.items() if k != "neighbour_source"} for s in samples]
    out = collate_views(samples)
    if neighbours is not None:
        out["neighbour_source"], out["neighbour_source_hw"] = pad_images(neighbours)
    events = out["roi_events"]
    if events.ndim != 2 or events.shape[1] != len(ROI_EVENTS):
        raise ValueError(f"collate_neighbour_pairs: roi_events must be [B, {len(ROI_EVENTS)}] counts in ROI_EVENTS "
                         f"order {ROI_EVENTS}, got {tuple(events.shape)}")
    totals = events.long().sum(dim=0)
    out["counters"] = {**out.get("counters", {}),
                       **{ROI_COUNTER_PREFIX + key: total for key, total in zip(ROI_EVENTS, totals.unbind())}}
    return out
