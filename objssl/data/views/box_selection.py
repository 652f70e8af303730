"""Which ``K`` boxes a box-aware sample carries: ``K`` of the visible proposals, a fallback when too
few are visible (UniVIP's random top-up or SoCo's whole shared region), then padding to ``K``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from objssl.data.views.box_geometry import intersect, random_boxes_in_region

__all__ = ["select_boxes", "shared_region", "RANDOM_ID_BASE", "WHOLE_REGION_ID", "PAD_ID"]

#: ``box_ids`` of boxes that are not proposals: random fallback box ``j`` is ``RANDOM_ID_BASE - j``
RANDOM_ID_BASE = -2
WHOLE_REGION_ID = -100
PAD_ID = -1


def shared_region(crops: Tensor, carriers: list[int]) -> Tensor:
    """``[4]`` the intersection of the box-carrying views' crops (may be empty)."""
    region = crops[carriers[0]] if carriers else crops[0]
    for v in carriers[1:]:
        region = intersect(region, crops[v])
    return region


def select_boxes(
    props: Tensor,
    visible: Tensor,
    crops: Tensor,
    carriers: list[int],
    *,
    k: int,
    min_boxes: int,
    pad: str,
    fallback: str,
    fallback_min_size: float,
    on_event: Callable[[str, str], None],
) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes float [K, 4] in image pixels, box_ids long [K], box_mask bool [K])``.

    Args:
        props: ``[M, 4]`` an image's proposals; ``visible``: ``bool [M]`` those visible in every carrier.
        crops: ``[V, 4]`` the views' crops; ``carriers``: the views that carry boxes.
        pad: ``"duplicate"`` repeats valid boxes (all slots valid), ``"zeros"`` pads with masked zeros.
        fallback: ``"random"`` tops up to ``K`` with random boxes in the shared region; ``"whole"``
            uses the shared region as the one box when none is visible.
        on_event: ``(STAT_KEY, message)`` called for each counted fallback.
    """
    K = k
    if K == 0:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
    idx = torch.nonzero(visible).reshape(-1)
    if len(idx) > K:
        idx = idx[torch.randperm(len(idx))[:K]]
    boxes, ids = props[idx], idx.clone()
    region = shared_region(crops, carriers)
    if len(boxes) < min_boxes:
        region_ok = float(region[2] - region[0]) > 0 and float(region[3] - region[1]) > 0
        if not region_ok:  # carriers share nothing: use the first carrier's crop
            region = crops[carriers[0]] if carriers else crops[0]
        if fallback == "random":
            on_event("fallback_random", "too few proposals in the shared region; random boxes added")
            extra = random_boxes_in_region(region, K - len(boxes), boxes, min_size=fallback_min_size)
            ids = torch.cat([ids, RANDOM_ID_BASE - torch.arange(len(extra))])
            boxes = torch.cat([boxes, extra])
        elif not len(boxes):
            on_event("fallback_whole", "no proposal is visible in every view; the shared region is the box")
            boxes, ids = region[None].clone(), torch.tensor([WHOLE_REGION_ID])
    n = len(boxes)
    mask = torch.zeros(K, dtype=torch.bool)
    mask[:n] = True
    if n < K:
        if pad == "duplicate" and n:
            dup = torch.randint(n, (K - n,))
            boxes, ids = torch.cat([boxes, boxes[dup]]), torch.cat([ids, ids[dup]])
            mask[:] = True
        else:
            boxes = torch.cat([boxes, torch.zeros(K - n, 4)])
            ids = torch.cat([ids, torch.full((K - n,), PAD_ID, dtype=torch.long)])
    return boxes.float(), ids.long(), mask
