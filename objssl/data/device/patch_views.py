"""ORL's stage-3 views with their pixels made on the training device: the two whole-image views and
the four RoI patches (:class:`objssl.data.roi_pair_views.RoIPairViews` with ``augment_on="device"``).

In the loader, each patch draws what the loader path's patch pipeline draws
(:func:`draw_patch_params`: the flip coin of ``v2.RandomHorizontalFlip``, then the colour draw of
:func:`~objssl.data.device.params.draw_colour`); its crop is its box, cut from the image or from the
neighbour (``patch_source``). On the device, :class:`DevicePatchViews` turns the collated batch into
the loader path's: ``views`` (by :class:`~objssl.data.device.augment.DeviceAugment`), ``roi_intra``
and ``roi_inter``.

The loader path resizes each box on the uint8 PIL image (antialiased bilinear) and runs the colour
ops on uint8 pixels; here everything stays in float, so the two agree up to that quantisation and the
resize filters' difference (tests/data/test_roi_pair_views_device.py gives the figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from objssl.data.device.augment import DeviceAugment
from objssl.data.device.params import ViewBatch, ViewParams, draw_colour
from objssl.data.device.pipeline import DeviceView, to_unit_float, view_colour, view_geometry
from objssl.data.transforms import ViewAugmentation

__all__ = ["PATCH_FIELDS", "PATCHES", "FROM_IMAGE", "FROM_NEIGHBOUR", "draw_patch_params", "DevicePatchViews"]

#: the sample fields the patches consume (and :class:`DevicePatchViews` removes from the batch)
PATCH_FIELDS = ("neighbour_source", "neighbour_source_hw", "patch_params", "patch_source")
#: patches per sample, in the order of ``patch_params``: intra first, intra second, inter first, inter second
PATCHES = 4
#: ``patch_source`` values: the patch is cut from the image / from the neighbour image
FROM_IMAGE, FROM_NEIGHBOUR = 0, 1
# a crop inside any image (one pixel): stands in for the crops of the other source's rows
_ONE_PIXEL = (0.0, 0.0, 1.0, 1.0)


def draw_patch_params(aug: ViewAugmentation, box: Sequence[float] | Tensor) -> ViewParams:
    """The draws of :func:`objssl.data.roi_pair_views.patch_transform` ``(aug)``, same torch RNG calls:
    ``torch.rand(1) < hflip_p`` (what ``v2.RandomHorizontalFlip`` computes), then the colour draw.
    ``box``: the patch's crop (xyxy, whole source pixels)."""
    flip = bool(torch.rand(1) < aug.hflip_p)
    crop = tuple(float(v) for v in (box.tolist() if isinstance(box, Tensor) else box))
    return ViewParams(crop, flip, draw_colour(aug))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DevicePatchViews:
    """The whole-image views and the RoI patches of a batch, made on the device.

    Attributes:
        image: the two whole-image views.
        patches: the first and the second patch of a pair (view 1's and view 2's colour ops at the
            patch size, bilinear; no resized crop: the box is the crop).
    """

    image: DeviceAugment
    patches: tuple[DeviceView, DeviceView]

    @classmethod
    def from_augmentations(cls, image_augs: Sequence[ViewAugmentation], patch_augs: Sequence[ViewAugmentation],
                           *, resize: str = "auto") -> DevicePatchViews:
        """The views of ``image_augs`` (sized as the whole views) and the patches of ``patch_augs``
        (sized as the patches: their blur kernel follows the patch side, as the loader path's)."""
        if len(patch_augs) != 2:
            raise ValueError(f"DevicePatchViews: two patch augmentations are needed, got {len(patch_augs)}")
        image = DeviceAugment(tuple(DeviceView.from_augmentation(a, resize=resize) for a in image_augs))
        patches = tuple(DeviceView.from_augmentation(a, interpolation="bilinear", resize=resize) for a in patch_augs)
        return cls(image, patches)  # type: ignore[arg-type]

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        """A collated device-mode batch (:func:`objssl.data.roi_pair_events.collate_neighbour_pairs`),
        on the device → the batch with ``views`` (``float [B, 3, S, S]`` each), ``roi_intra`` and
        ``roi_inter`` (``float [B, 2, 3, p, p]``); the device fields are dropped. A batch without
        ``source`` (made in the loader) is returned as is."""
        if "source" not in batch:
            return dict(batch)
        patches = self.make_patches(batch, dtype)
        out = self.image({k: v for k, v in batch.items() if k not in PATCH_FIELDS}, dtype)
        out["roi_intra"], out["roi_inter"] = patches[:, :2], patches[:, 2:]
        return out

    def make_patches(self, batch: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> Tensor:
        """``float [B, 4, 3, p, p]``: the patches in ``patch_params`` order, each cut from the image
        (``source``) or the neighbour (``neighbour_source``) as ``patch_source`` (``long [B, 4]``) says."""
        params = [ViewBatch(**p) for p in batch["patch_params"]]
        if len(params) != PATCHES:
            raise ValueError(f"DevicePatchViews: the batch has {len(params)} patches' parameters, expected {PATCHES}")
        images = to_unit_float(batch["source"], dtype)
        device = images.device
        from_neighbour = batch["patch_source"].to(device) == FROM_NEIGHBOUR
        neighbours = None
        if bool(from_neighbour.any()):
            neighbours = to_unit_float(batch["neighbour_source"], dtype)
        out = []
        for k, p in enumerate(params):
            p, view = p.to(device), self.patches[k % 2]
            rows = from_neighbour[:, k]
            if neighbours is None or not bool(rows.any()):
                geometry = view_geometry(images, p, view)
            else:
                # each source cuts its own rows' crops (one pixel for the other rows), then rows are picked
                one = torch.tensor(_ONE_PIXEL, device=device, dtype=p.crop.dtype).expand_as(p.crop)
                picked = rows[:, None]
                own = view_geometry(images, replace(p, crop=torch.where(picked, one, p.crop)), view)
                other = view_geometry(neighbours, replace(p, crop=torch.where(picked, p.crop, one)), view)
                geometry = torch.where(rows.reshape(-1, 1, 1, 1), other, own)
            out.append(view_colour(geometry, p, view))
        return torch.stack(out, dim=1)
