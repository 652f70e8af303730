"""ORL's intra-RoI box jitter: a second box near a proposal box, the other half of an intra-RoI pair.

Rules (``ORL:openselfsup/datasets/orl.py``, ``aug_bbox``; config ``…/stage3/r50_bs512_ep800.py``): area
scaled by ``U(0.5, 2)``, aspect ratio (w/h) log-uniform in ``(0.5, 2)``, centre moved by
``U(−0.5, 0.5)·(w, h)`` of the original box, sides and corner rounded to whole pixels; accepted when
the box lies inside the image and its IoU with the original is > 0.5; up to 200 tries, else the
original box itself.

The tries are drawn at once and the first accepted one is taken: the same distribution as trying them
one after another. All draws use torch's global RNG (seeded per sample by the dataset).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["jitter_box", "JITTER_SCALE", "JITTER_RATIO", "JITTER_SHIFT", "JITTER_MIN_IOU", "JITTER_TRIES"]

JITTER_SCALE = (0.5, 2.0)
JITTER_RATIO = (0.5, 2.0)
JITTER_SHIFT = (-0.5, 0.5)
JITTER_MIN_IOU = 0.5
JITTER_TRIES = 200


def jitter_box(box: Tensor, width: int, height: int, *, tries: int = JITTER_TRIES) -> tuple[Tensor, bool]:
    """``(jittered box, found)`` for ``box`` (xyxy, whole pixels, inside a ``width × height`` image);
    ``found`` False: no try was accepted and the box is ``box`` itself (ORL's fallback)."""
    box = box.to(torch.float64).reshape(4)
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = box[0] + 0.5 * w, box[1] + 0.5 * h
    u = torch.rand(tries, 4, dtype=torch.float64)
    area = (JITTER_SCALE[0] + (JITTER_SCALE[1] - JITTER_SCALE[0]) * u[:, 0]) * w * h
    lo, hi = math.log(JITTER_RATIO[0]), math.log(JITTER_RATIO[1])
    ratio = torch.exp(lo + (hi - lo) * u[:, 1])
    new_w, new_h = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    shift = JITTER_SHIFT[0] + (JITTER_SHIFT[1] - JITTER_SHIFT[0]) * u[:, 2:]
    x1 = torch.round(cx + shift[:, 0] * w - 0.5 * new_w)
    y1 = torch.round(cy + shift[:, 1] * h - 0.5 * new_h)
    cand = torch.stack([x1, y1, x1 + new_w, y1 + new_h], dim=1)
    inside = (x1 >= 0) & (y1 >= 0) & (cand[:, 2] <= width) & (cand[:, 3] <= height) & (new_w >= 1) & (new_h >= 1)
    ok = inside & (box_iou(cand, box[None])[:, 0] > JITTER_MIN_IOU)
    if not bool(ok.any()):
        return box.round().to(torch.int64), False
    return cand[int(ok.nonzero()[0, 0])].to(torch.int64), True
