"""Making the views of one box-aware sample, view by view (:class:`ViewMaker`), and what that makes
(:class:`MadeViews`): pixels in the loader, or the parameters the training device makes them from.

Both paths make the same random draws in the same order for each view: the view's box jitter (by the
caller), its colour draw (the loader's torchvision transform, or :func:`~objssl.data.device.params.draw_colour`),
then its box-cutout squares; so a seed gives identical boxes, flags and squares on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.params import ViewParams, draw_colour
from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, photometric_transform
from objssl.data.views.box_cutout import draw_cutout_squares, fill_squares
from objssl.data.views.box_geometry import boxes_in_crop_view, resize_boxes
from objssl.data.views.view_spec import BoxViewSpec

__all__ = ["MadeViews", "ViewMaker"]


class MadeViews:
    """What step 3 makes, view by view: pixels (loader), parameters (device), boxes, cutout squares."""

    def __init__(self) -> None:
        self.views: list[Tensor | None] = []
        self.params: list[dict[str, Tensor]] = []
        self.cutout: list[Tensor] = []
        self.boxes: list[Tensor] = []
        self.geometric: list[Tensor] = []  # uint8 pixels after crop/resize/flip, before colour (loader)

    def fields(self, source: Tensor | None) -> dict[str, Any]:
        if not self.params:
            return {"views": self.views, "boxes": self.boxes}
        out: dict[str, Any] = {"view_params": self.params, "cutout": self.cutout, "boxes": self.boxes}
        if source is not None:
            out["source"] = source
        return out


class ViewMaker:
    """Makes view ``v`` of a sample into a :class:`MadeViews` (``device``: parameters, not pixels)."""

    def __init__(self, views: Sequence[BoxViewSpec], *, k: int, normalize: bool, device: bool) -> None:
        self.views, self.k, self.normalize, self.device = tuple(views), int(k), normalize, device
        # blur kernels follow each view's own size (~10 % of its side)
        self._colour = [photometric_transform(replace(s.color, size=s.hw[0]), normalize=False) for s in self.views]
        self._norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def make(self, made: MadeViews, v: int, img: Tensor | None, hw: tuple[int, int], crops: Tensor, flips: Tensor,
             vb_img: Tensor | None, vmask: Tensor, source_boxes: Tensor | None) -> None:
        """View ``v``: its boxes (``vb_img`` in image pixels, or the ``same:J`` source view's
        ``source_boxes``), then its pixels here or its colour draw for the device, then its cutout
        squares; the draws are made in the same order on both paths."""
        spec = self.views[v]
        j = spec.source_view()
        if j is not None:  # "view J resized": J's pixels before colour, at this size (SoCo*)
            vb = resize_boxes(source_boxes.reshape(-1, 4), self.views[j].hw, spec.hw)
        else:
            vb = boxes_in_crop_view(vb_img, crops[v], bool(flips[v]), spec.hw, hw)
        vb = vb.reshape(*vmask.shape, 4)
        pix = None
        if self.device:
            made.params.append(ViewParams(tuple(float(c) for c in crops[v]), bool(flips[v]),
                                          draw_colour(spec.color)).as_tensors())
        else:
            if j is not None:
                raw = TF.resize(made.geometric[j], list(spec.hw), interpolation=InterpolationMode(spec.interpolation),
                                antialias=True)
            else:
                x1, y1, x2, y2 = (int(round(float(c))) for c in crops[v])
                raw = TF.resized_crop(img, y1, x1, y2 - y1, x2 - x1, list(spec.hw),
                                      interpolation=InterpolationMode(spec.interpolation), antialias=True)
                raw = TF.horizontal_flip(raw) if bool(flips[v]) else raw
            made.geometric.append(raw)
            # uint8 throughout, so bicubic overshoot is already clamped before the colour ops
            pix = self._colour[v](tv_tensors.Image(raw)).as_subclass(Tensor)
            pix = self._norm(pix) if self.normalize else pix
        if not spec.carries_boxes or not self.k:
            vb = torch.zeros(*vmask.shape, 4)
        squares = torch.zeros(0, 4, dtype=torch.long)
        if spec.cutout_p > 0 and spec.carries_boxes and self.k:  # SoCo cuts the normalised image
            squares = draw_cutout_squares(vb.reshape(-1, 4), vmask.reshape(-1), spec.cutout_p, spec.cutout_area)
            if pix is not None:
                pix = fill_squares(pix[None], squares[None])[0]
        made.views.append(pix)
        made.cutout.append(squares)
        made.boxes.append(vb * vmask[..., None])
