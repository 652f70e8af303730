"""SoCo's box cutout: zero-filled squares inside a view's boxes, after normalisation.

Official rule (``SoCo:contrast/data/transform_ops.py`` ``RandomCutoutInBbox``, applied to views 2 and 3
of the FPN-100ep recipe and to view 2 of C4, ``--cutout_prob 0.5 --cutout_ratio_min 0.1
--cutout_ratio_max 0.3`` in ``SoCo:tools/SoCo_*.sh``): each box of the (padded) set, with probability
``p``, gets a square of area ``U(a, b)`` times the box area set to 0 in the normalised image.

Here the square always lies inside the box (its top-left corner is uniform over the positions where it
fits, its side at most the box's shorter side); the official code centres it on a uniform point of the
box and lets it spill over the box edge (clipped to the image, and with the 224 bound on the 112 view).

The squares are drawn (:func:`draw_cutout_squares`, in the loader, per sample) apart from being filled
(:func:`fill_squares`, on a batch), so views made on the training device get the loader's squares.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cutout_in_boxes", "draw_cutout_squares", "fill_squares"]


def draw_cutout_squares(boxes: Tensor, mask: Tensor, p: float, area: tuple[float, float]) -> Tensor:
    """``long [K, 4]`` xyxy squares (whole pixels; ``[0, 0, 0, 0]`` where none) for ``boxes [K, 4]``
    (xyxy in view pixels) with ``mask bool [K]``: each valid box, with probability ``p``, gets a square
    of ``U(area)`` times its area whose pixels lie wholly inside it. Boxes narrower than one whole pixel
    get none."""
    squares = torch.zeros(len(boxes), 4, dtype=torch.long)
    if p <= 0:
        return squares
    lo, hi = float(area[0]), float(area[1])
    for i, ((x1, y1, x2, y2), valid) in enumerate(zip(boxes.tolist(), mask.tolist())):
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
        squares[i] = torch.tensor([cx, cy, cx + side, cy + side])
    return squares


def fill_squares(views: Tensor, squares: Tensor) -> Tensor:
    """``views [B, C, H, W]`` with the pixels of each sample's ``squares [B, K, 4]`` (xyxy, whole
    pixels, empty ones ignored) set to 0; a new tensor."""
    if squares.numel() == 0:
        return views
    H, W = views.shape[-2:]
    sq = squares.to(views.device)
    ys = torch.arange(H, device=views.device).view(1, 1, H, 1)
    xs = torch.arange(W, device=views.device).view(1, 1, 1, W)
    x1, y1, x2, y2 = (sq[..., i].view(*sq.shape[:2], 1, 1) for i in range(4))
    inside = ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)).any(dim=1)  # [B, H, W]
    return views.masked_fill(inside[:, None], 0.0)


def cutout_in_boxes(view: Tensor, boxes: Tensor, mask: Tensor, p: float, area: tuple[float, float]) -> Tensor:
    """A copy of ``view`` (``[C, H, W]``) with the squares of :func:`draw_cutout_squares` set to 0."""
    if p <= 0 or not len(boxes):
        return view
    return fill_squares(view[None], draw_cutout_squares(boxes, mask, p, area)[None])[0]
