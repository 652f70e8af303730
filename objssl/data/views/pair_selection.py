"""SoCo's per-pair box sets (``box_sets="per_pair"``): each pair of view 0 with another view gets its own boxes.

Official rule (``SoCo:contrast/data/dataset.py``, ``ImageFolderImageAsymBboxAwareMultiJitter1`` and
siblings): all crops are redrawn on each of up to ``max_tries`` tries, until *every* pair has at least
``least`` proposals that intersect both of its crops; ``least`` starts at ``min_boxes`` (SoCo: padding_k
// 2 = 2) and halves after each failed try (never below 1); after the last try the last draw is kept.
Then, per pair: ``K`` of its visible proposals at random, the whole shared region when none, padding
by duplicating boxes of that pair. A ``same:J`` view (SoCo*'s view 4 = view 2 at 112) reuses view
``J``'s pair set (the official ``bboxs1_14 = bboxs1_12``, ``bboxs4 = bboxs2``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from objssl.data.views.box_geometry import visible_in_crops
from objssl.data.views.box_selection import PAD_ID, select_boxes
from objssl.data.views.view_spec import BoxViewSpec

__all__ = ["pair_views", "pairs_visible", "select_pair_sets"]


def pair_views(views: Sequence[BoxViewSpec]) -> list[int | None]:
    """For pair ``p`` (view 0 with view ``p + 1``): the view whose selection it uses (itself, or the
    source of a ``same:J`` view, followed to its root), or None when view ``p + 1`` carries no boxes."""
    out: list[int | None] = []
    for v in range(1, len(views)):
        if not views[v].carries_boxes:
            out.append(None)
            continue
        root = v
        while (j := views[root].source_view()) is not None and j > 0:
            root = j
        out.append(root)
    return out


def pairs_visible(props: Tensor, crops: Tensor, roots: list[int | None], min_visible: float) -> dict[int, Tensor]:
    """``{view b: bool [M]}`` proposals visible in both crop 0 and crop ``b``, for each pair's own view."""
    return {b: visible_in_crops(props, crops, [0, b], min_visible) for b in sorted({r for r in roots if r})}


def select_pair_sets(
    props: Tensor,
    visible: dict[int, Tensor],
    crops: Tensor,
    roots: list[int | None],
    *,
    k: int,
    min_boxes: int,
    pad: str,
    fallback: str,
    fallback_min_size: float,
    on_event: Callable[[str, str], None],
) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes float [P, K, 4] in image pixels, box_ids long [P, K], box_mask bool [P, K])`` with
    ``P = V - 1``; each pair's set is :func:`~objssl.data.views.box_selection.select_boxes` over the
    proposals visible in its two crops (the fallback region is the two crops' intersection)."""
    own: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
    for b in sorted(visible):
        own[b] = select_boxes(props, visible[b], crops, [0, b], k=k, min_boxes=min_boxes, pad=pad,
                              fallback=fallback, fallback_min_size=fallback_min_size, on_event=on_event)
    empty = (torch.zeros(k, 4), torch.full((k,), PAD_ID, dtype=torch.long), torch.zeros(k, dtype=torch.bool))
    sets = [own[r] if r is not None else empty for r in roots]
    return (torch.stack([s[0] for s in sets]), torch.stack([s[1] for s in sets]),
            torch.stack([s[2] for s in sets]))
