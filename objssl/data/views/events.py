"""The counted fallbacks of box-aware sampling: names and order of ``sample["view_events"]``.

:func:`objssl.data.collate.collate_views` sums them over a batch into ``batch["counters"]`` under
``"views/<name>"``; the trainer keeps the running totals.
"""

from __future__ import annotations

__all__ = ["STAT_KEYS", "COUNTER_PREFIX"]

#: per-sample event counters, in the order of ``sample["view_events"]``
STAT_KEYS = ("no_proposals", "fallback_random", "fallback_whole", "overlap_resampled", "tries_exhausted")

#: ``batch["counters"]`` key of event ``STAT_KEYS[i]``: ``COUNTER_PREFIX + STAT_KEYS[i]``
COUNTER_PREFIX = "views/"
