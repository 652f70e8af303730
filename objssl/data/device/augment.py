"""What the training device makes of a batch of device-mode samples (:class:`DeviceAugment`), and the
decode bound the loader may use for them (:meth:`DeviceAugment.max_reduction`).

A device-mode sample carries ``source`` (the decoded ``uint8 [3, H, W]`` image), ``view_params`` (one
:meth:`~objssl.data.device.params.ViewParams.as_tensors` dict per view), ``cutout`` (per view, the
``long [K, 4]`` box-cutout squares, :func:`objssl.data.views.box_cutout.draw_cutout_squares`) and,
for UniVIP, ``instances["canvas_params"]``; :func:`objssl.data.collate.collate_views` pads the
sources into one ``uint8 [B, 3, H, W]`` tensor and stacks the rest. On the device,
:class:`DeviceAugment` turns that batch into the one the loader path gives: ``views`` (and
``instances["canvas"]``), every sample with its own draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from objssl.data.device.params import ViewBatch
from objssl.data.device.pipeline import DeviceView, apply_views

__all__ = ["AUGMENT_ON", "DeviceAugment", "DEVICE_FIELDS", "max_reduction_for", "REDUCTIONS"]

#: where a transform makes its views' pixels: in the loader, or on the training device (its draws only)
AUGMENT_ON = ("loader", "device")

#: the sample fields the device consumes (and removes from the batch)
DEVICE_FIELDS = ("source", "source_hw", "view_params", "cutout")
#: decode reductions a JPEG decoder offers (Pillow's draft mode: DCT scaling by 1/2, 1/4, 1/8)
REDUCTIONS = (8, 4, 2, 1)


def max_reduction_for(crops: Tensor, sizes: Sequence[tuple[int, int]]) -> int:
    """The largest decode reduction ``r`` in :data:`REDUCTIONS` such that, for every view, the crop
    (``crops [V, 4]`` xyxy, full-resolution pixels) divided by ``r`` is still at least the view's
    ``(h, w)`` on both sides; 1 when a crop is already smaller than its view (it is upsampled at full
    resolution, and a reduced decode must not make that worse). So a view is never upsampled where the
    full-resolution image would not have been."""
    r = REDUCTIONS[0]
    for crop, (h, w) in zip(crops.tolist(), sizes):
        cw, ch = crop[2] - crop[0], crop[3] - crop[1]
        r = min(r, next(f for f in REDUCTIONS if f == 1 or (cw / f >= w and ch / f >= h)))
    return r


@dataclass(frozen=True)
class DeviceAugment:
    """The views of a batch made on the device.

    Attributes:
        views: one :class:`~objssl.data.device.pipeline.DeviceView` per view, in the views' order.
        canvas: UniVIP's instance canvas (:meth:`objssl.data.views.instances.InstanceCanvas.device_view`), or None.
    """

    views: tuple[DeviceView, ...]
    canvas: DeviceView | None = None

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        """A collated device-mode batch, on the device → the batch with ``views`` (``float [B, 3, h, w]``
        each) and, with a canvas, ``instances["canvas"]`` (``float [B, 3, S, S]`` in ``[0, 1]``); the
        device fields are dropped. A batch without ``source`` (made in the loader) is returned as is."""
        if "source" not in batch:
            return dict(batch)
        out = {k: v for k, v in batch.items() if k not in DEVICE_FIELDS}
        params = [ViewBatch(**p) for p in batch["view_params"]]
        if len(params) != len(self.views):
            raise ValueError(f"DeviceAugment: the batch has {len(params)} views' parameters, the views are "
                             f"{len(self.views)}")
        views, cutouts = list(self.views), list(batch.get("cutout") or [None] * len(params))
        if self.canvas is not None:
            instances = dict(out["instances"])
            params.append(ViewBatch(**instances.pop("canvas_params")))
            views.append(self.canvas)
            cutouts.append(None)
        made = apply_views(batch["source"], params, views, dtype, cutouts)
        if self.canvas is not None:
            instances["canvas"] = made.pop()
            out["instances"] = instances
        out["views"] = made
        return out

    def max_reduction(self, sample: Mapping[str, Any]) -> int:
        """The decode reduction one sample's draws allow (:func:`max_reduction_for` over its views cut
        from the source image, and its canvas)."""
        crops, sizes = [], []
        for p, view in zip(sample["view_params"], self.views):
            if view.source_view is None:
                crops.append(p["crop"])
                sizes.append(view.size)
        if self.canvas is not None:
            crops.append(sample["instances"]["canvas_params"]["crop"])
            sizes.append(self.canvas.size)
        return max_reduction_for(torch.stack(crops), sizes)

    def rescale(self, sample: dict[str, Any], sx: float, sy: float) -> None:
        """Crops of ``sample`` (full-resolution pixels) moved onto a reduced decode (``sx``, ``sy``:
        decoded size / full size); boxes stay as drawn (full-resolution geometry), in place."""
        scale = torch.tensor([sx, sy, sx, sy])
        for p in sample["view_params"]:
            p["crop"] = p["crop"] * scale
        if self.canvas is not None:
            cp = sample["instances"]["canvas_params"]
            cp["crop"] = cp["crop"] * scale
