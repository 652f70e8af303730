"""ORL's stage-2 result for one image: its neighbours, and its top RoI pairs as matching colours.

One row per neighbour: the image (left) and the neighbour (right) at a common height; pair ``j``
is drawn in colour ``j`` in both, so a box on the left and the box of the same colour on the right
are a stored pair (as the figure of ORL's paper shows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from objssl.images.decode import load_rgb
from objssl.viz.draw import box_colors, draw_boxes, side_by_side, to_uint8_image

__all__ = ["render_correspondence"]


def _scaled(path: str, height: int) -> tuple[Tensor, float]:
    img = to_uint8_image(load_rgb(path))
    f = height / img.shape[1]
    w = max(1, round(img.shape[2] * f))
    return F.interpolate(img[None].float(), size=(height, w), mode="bilinear", antialias=True,
                         align_corners=False)[0].round().clamp(0, 255).to(torch.uint8), f


def _stack(rows: list[Tensor], gap: int = 8, background: int = 255) -> Tensor:
    w = max(int(r.shape[2]) for r in rows)
    h = sum(int(r.shape[1]) for r in rows) + gap * (len(rows) - 1)
    canvas = torch.full((3, h, w), background, dtype=torch.uint8)
    y = 0
    for r in rows:
        canvas[:, y:y + r.shape[1], : r.shape[2]] = r
        y += r.shape[1] + gap
    return canvas


def render_correspondence(store, index: int, *, neighbours: int | None = None, pairs: int = 5,
                          height: int = 256, width: int = 3) -> tuple[Tensor, int]:
    """``(uint8 [3, H, W] picture, number of pairs drawn)`` for image ``index`` of a
    :class:`~objssl.correspondence.store.CorrespondenceStore`: its first ``neighbours`` neighbours
    (all ``k`` by default), the best ``pairs`` stored pairs of each."""
    query, fq = _scaled(store.images[index], height)
    rows, drawn = [], 0
    for slot in range(store.k if neighbours is None else min(neighbours, store.k)):
        q_boxes, n_boxes, _ = store.pairs(index, slot)
        q_boxes, n_boxes = q_boxes[:pairs], n_boxes[:pairs]
        nb, fn = _scaled(store.images[int(store.neighbours(index)[slot])], height)
        colors = box_colors(len(q_boxes))
        left = draw_boxes(query, torch.from_numpy(q_boxes.astype("float32")) * fq, colors=colors, width=width)
        right = draw_boxes(nb, torch.from_numpy(n_boxes.astype("float32")) * fn, colors=colors, width=width)
        rows.append(side_by_side([left, right], gap=16))
        drawn += len(q_boxes)
    if not rows:
        return query, 0
    return _stack(rows), drawn
