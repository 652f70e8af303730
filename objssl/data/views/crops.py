"""Where each view's crop lies in the image: drawn per view spec, and the overlap rule of views 0 and 1.

Crops are ``xyxy`` in image pixels, integer-valued, drawn with torchvision's
``RandomResizedCrop.get_params`` (torch's global RNG).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_area
from torchvision.transforms import RandomResizedCrop

from objssl.data.views.box_geometry import intersect
from objssl.data.views.view_spec import BoxViewSpec

__all__ = ["draw_crop", "draw_crop_inside", "draw_crops", "overlap_ok"]


def draw_crop(spec: BoxViewSpec, img: Tensor) -> Tensor:
    """``[4]`` one view's crop of ``img`` (``[C, H, W]``): the whole image, or a random resized crop."""
    h, w = img.shape[-2:]
    if spec.crop == "whole":
        return torch.tensor([0.0, 0.0, float(w), float(h)])
    top, left, ch, cw = RandomResizedCrop.get_params(img, list(spec.scale), list(spec.ratio))
    return torch.tensor([float(left), float(top), float(left + cw), float(top + ch)])


def draw_crop_inside(spec: BoxViewSpec, region: Tensor) -> Tensor:
    """A random resized crop of the rectangle ``region`` (so it overlaps it fully)."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in region)
    dummy = torch.empty(1, max(1, y2 - y1), max(1, x2 - x1))
    top, left, ch, cw = RandomResizedCrop.get_params(dummy, list(spec.scale), list(spec.ratio))
    return torch.tensor([float(x1 + left), float(y1 + top), float(x1 + left + cw), float(y1 + top + ch)])


def draw_crops(
    views: Sequence[BoxViewSpec], img: Tensor, first: Tensor | None, *, second_inside_first: bool = False
) -> Tensor:
    """``[V, 4]`` crop rectangles: ``same:J`` views copy view J, view 0 is ``first`` when given, view 1
    is drawn inside view 0 with ``second_inside_first``, the rest are drawn afresh."""
    crops = torch.zeros(len(views), 4)
    for v, spec in enumerate(views):
        j = spec.source_view()
        if j is not None:
            crops[v] = crops[j]
        elif v == 0 and first is not None:
            crops[v] = first
        elif v == 1 and second_inside_first:
            crops[v] = draw_crop_inside(spec, crops[0])
        else:
            crops[v] = draw_crop(spec, img)
    return crops


def overlap_ok(crops: Tensor, min_frac: float, min_side: float) -> bool:
    """Whether crops 0 and 1 overlap by at least ``min_frac`` of crop 1's area, with both sides of the
    overlap at least ``min_side`` pixels (always true for fewer than two views or no rule)."""
    if len(crops) < 2 or (min_frac <= 0 and min_side <= 0):
        return True
    inter = intersect(crops[0], crops[1])
    iw, ih = float(inter[2] - inter[0]), float(inter[3] - inter[1])
    if iw <= 0 or ih <= 0:
        return False
    if iw * ih < min_frac * float(box_area(crops[1:2])[0]):
        return False
    return min(iw, ih) >= min_side
