"""SoCo's box cutout: zero-filled squares inside a view's boxes, after normalisation.

Official rule (``SoCo:contrast/data/transform_ops.py`` ``RandomCutoutInBbox``, applied to views 2 and 3
of the FPN-100ep recipe and to view 2 of C4, ``--cutout_prob 0.5 --cutout_ratio_min 0.1
--cutout_ratio_max 0.3`` in ``SoCo:tools/SoCo_*.sh``): each box of the (padded) set, with probability
``p``, gets a square of area ``U(a, b)`` times the box area set to 0 in the normalised image.

Here the square always lies inside the box (its top-left corner is uniform over the positions where it
fits, its side at most the box's shorter side); the official code centres it on a uniform point of the
box and lets it spill over the box edge (clipped to the image, and with the 224 bound on the 112 view).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cutout_in_boxes"]


def cutout_in_boxes(view: Tensor, boxes: Tensor, mask: Tensor, p: float, area: tuple[float, float]) -> Tensor:
    """A copy of ``view`` (``[C, H, W]``) with, for each valid box (``boxes [K, 4]`` xyxy in view pixels,
    ``mask bool [K]``) with probability ``p``, a zero square of ``U(area)`` times the box area whose
    pixels lie wholly inside the box. Boxes narrower than one whole pixel are left alone."""
    if p <= 0 or not len(boxes):
        return view
    out = view.clone()
    lo, hi = float(area[0]), float(area[1])
    for (x1, y1, x2, y2), valid in zip(boxes.tolist(), mask.tolist()):
        # draws for every slot, valid or not, so the RNG stream does not depend on which slots are valid
        apply = bool(torch.rand(()) < p)
        frac = lo + (hi - lo) * float(torch.rand(()))
        u, v = float(torch.rand(())), float(torch.rand(()))
        if not (valid and apply):
            continue
        left, top, right, bottom = math.ceil(x1), math.ceil(y1), math.floor(x2), math.floor(y2)
        fit = min(right - left, bottom - top)  # whole pixels inside the box
        side = min(fit, round(math.sqrt(frac * (x2 - x1) * (y2 - y1))))
        if side < 1:
            continue
        cx = left + int(u * (right - left - side + 1))
        cy = top + int(v * (bottom - top - side + 1))
        out[:, cy:cy + side, cx:cx + side] = 0.0
    return out
