"""ORL's stage-3 sample from an image, its boxes, one neighbour image and their stored box pairs:
the two whole-image views, the intra-RoI patch pair and the inter-RoI patch pair.

Source: ``ORL:openselfsup/datasets/orl.py`` (``ORLDataset.__getitem__``) and the stage-3 config
``ORL:configs/selfsup/orl/coco/stage3/r50_bs512_ep800.py``:

* whole-image views: BYOL's two asymmetric views (:data:`objssl.data.transforms.BYOL_VIEWS`) at
  ``image_size`` (224);
* intra-RoI pair: a box drawn uniformly from the image's boxes, and its jitter
  (:func:`objssl.data.roi_jitter.jitter_box`);
* inter-RoI pair: a pair drawn uniformly from the stored pairs of the image and this neighbour, the first
  box cut from the image, the second from the neighbour;
* patches: each box cut from the original image and resized to ``patch_size`` (96) bilinear (the crop
  and resize ORL does on the PIL image), then view 1's / view 2's colour pipeline of BYOL_VIEWS (flip,
  colour jitter, grayscale, blur, solarise) with no random resized crop; the first patch of a pair
  gets view 1's, the second view 2's.

Fallbacks (ORL has none: its stage 2 never stores an empty box list or pair list, and an image without
proposals would fail there) are counted in ``roi_events`` (:data:`objssl.data.roi_pair_events.ROI_EVENTS`).
All draws use torch's global RNG, seeded per sample by the dataset.

With ``augment_on="device"`` the transform only draws: the same torch RNG calls in the same order
(box, jitter, pair, the whole views' draws, then each patch's flip and colour: intra first, inter
second), from the images' sizes alone; the pixels are made on the training device
(:class:`objssl.data.device.patch_views.DevicePatchViews`, its ``device_views``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.augment import AUGMENT_ON
from objssl.data.device.params import draw_image_views
from objssl.data.device.patch_views import FROM_IMAGE, FROM_NEIGHBOUR, DevicePatchViews, draw_patch_params
from objssl.data.roi_jitter import jitter_box
from objssl.data.roi_pair_events import ROI_EVENTS
from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform, ViewAugmentation, photometric_transform

__all__ = ["RoIPairViews", "patch_transform", "crop_patch"]


def patch_transform(aug: ViewAugmentation) -> v2.Transform:
    """A patch's pipeline: flip, then the colour ops of ``aug`` (no resized crop: the box is the crop)."""
    return v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(p=aug.hflip_p), photometric_transform(aug)])


def crop_patch(image: Image.Image, box: Sequence[int] | Tensor, size: int) -> Image.Image:
    """``box`` (xyxy, whole pixels) cut from ``image`` and resized to ``size × size``, bilinear."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return TF.resized_crop(image, y1, x1, y2 - y1, x2 - x1, [size, size], interpolation=InterpolationMode.BILINEAR,
                           antialias=True)


def _clip(boxes: Any, width: int, height: int) -> Tensor:
    """Boxes as int64 xyxy inside the image, at least one pixel wide and high (a store built from other
    files than the ones read now cannot give a crop outside the image)."""
    if isinstance(boxes, Tensor):
        b = boxes.detach().cpu().round().to(torch.int64).reshape(-1, 4)
    else:  # a copy: the store's arrays are read-only memory maps
        b = torch.from_numpy(np.array(boxes, dtype=np.int64).reshape(-1, 4))
    x1, y1 = b[:, 0].clamp(0, width - 1), b[:, 1].clamp(0, height - 1)
    x2 = torch.maximum(b[:, 2].clamp(max=width), x1 + 1)
    y2 = torch.maximum(b[:, 3].clamp(max=height), y1 + 1)
    return torch.stack([x1, y1, x2, y2], dim=1)


#: an RGB PIL image, or (device mode) only its ``(H, W)``
ImageOrSize = Image.Image | tuple[int, int]


def _size(image: ImageOrSize) -> tuple[int, int]:
    """``(width, height)`` of a PIL image or of an ``(H, W)`` size."""
    return image.size if isinstance(image, Image.Image) else (int(image[1]), int(image[0]))


class RoIPairViews:
    """``(image, boxes, neighbour, pairs) → sample`` (see the module docstring).

    Args:
        image_size: side of the whole-image views (224).
        patch_size: side of the RoI patches (96).
        augmentations: view 1's and view 2's (BYOL_VIEWS); their size is replaced by the two sides above.
        augment_on: ``"loader"`` (pixels made here) or ``"device"`` (parameters drawn here, pixels made
            by :attr:`device_views` on the training device).

    Call arguments: ``image`` and ``neighbour`` RGB PIL images (``neighbour`` None: none could be read;
    in device mode ``(H, W)`` sizes do as well); ``boxes`` ``[M, 4]`` xyxy original pixels of ``image``
    (M may be 0); ``pairs`` ``(query [P, 4], neighbour [P, 4])`` xyxy boxes of the image and of the
    neighbour (P may be 0; None with no neighbour).

    Returns, made in the loader, ``{"views": [Tensor[3, S, S]] * 2, "roi_intra": Tensor[2, 3, p, p],
    "roi_inter": Tensor[2, 3, p, p], "roi_events": long[len(ROI_EVENTS)]}``; in device mode
    ``{"view_params": [dict] * 2, "patch_params": [dict] * 4, "patch_source": long[4], "roi_events": ...}``
    (:meth:`~objssl.data.device.params.ViewParams.as_tensors` dicts; the patches in the order intra
    first, intra second, inter first, inter second; ``patch_source`` 0: cut from the image, 1: from the
    neighbour). The caller attaches the pixels (:class:`objssl.data.neighbour_pairs.NeighbourPairDataset`).
    """

    def __init__(self, *, image_size: int = 224, patch_size: int = 96,
                 augmentations: Sequence[ViewAugmentation] = BYOL_VIEWS, augment_on: str = "loader") -> None:
        if patch_size < 8:
            raise ValueError(f"RoIPairViews: patch_size must be >= 8, got {patch_size}")
        if len(augmentations) != 2:
            raise ValueError(f"RoIPairViews: two view augmentations are needed, got {len(augmentations)}")
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"RoIPairViews: augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.image_size, self.patch_size, self.augment_on = image_size, patch_size, augment_on
        self.image_augs = tuple(replace(a, size=image_size) for a in augmentations)
        self.patch_augs = tuple(replace(a, size=patch_size) for a in augmentations)
        self.image_views = MultiViewTransform.from_augmentations(self.image_augs)
        self.patch_views = [patch_transform(a) for a in self.patch_augs]
        #: makes a device-mode batch's pixels on the training device (None in the loader mode)
        self.device_views = (DevicePatchViews.from_augmentations(self.image_augs, self.patch_augs)
                             if augment_on == "device" else None)

    def _draw_boxes(self, size: tuple[int, int], boxes: Any, neighbour_size: tuple[int, int] | None,
                    pairs: tuple[Any, Any] | None) -> tuple[dict[str, int], list[tuple[int, Tensor]]]:
        """``(events, [(source, box)] * 4)``: the four patches' boxes (intra first, intra second, inter
        first, inter second) and which image each is cut from (FROM_IMAGE / FROM_NEIGHBOUR)."""
        events = dict.fromkeys(ROI_EVENTS, 0)
        width, height = size
        own = _clip(boxes, width, height)
        if len(own) == 0:
            events["no_boxes"] = 1
            box1 = torch.tensor([0, 0, width, height])
        else:
            box1 = own[int(torch.randint(len(own), ()))]
        box2, found = jitter_box(box1, width, height)
        events["jitter_kept_box"] = int(not found)
        intra = [(FROM_IMAGE, box1), (FROM_IMAGE, box2)]
        inter = intra
        if neighbour_size is None:
            events["no_neighbour"] = 1
        else:
            query = _clip(pairs[0], width, height)
            if len(query) == 0:
                events["no_pairs"] = 1
            else:
                k = int(torch.randint(len(query), ()))
                inter = [(FROM_IMAGE, query[k]), (FROM_NEIGHBOUR, _clip(pairs[1], *neighbour_size)[k])]
        return events, intra + inter

    def __call__(self, image: ImageOrSize, boxes: Any, neighbour: ImageOrSize | None,
                 pairs: tuple[Any, Any] | None) -> dict[str, Any]:
        if self.augment_on == "device":
            return self._draw(image, boxes, neighbour, pairs)
        if not isinstance(image, Image.Image):
            raise TypeError("RoIPairViews (augment_on='loader'): image must be a PIL image, "
                            f"got {type(image).__name__}")
        events, patches = self._draw_boxes(image.size, boxes, None if neighbour is None else neighbour.size, pairs)
        views = self.image_views(image)["views"]
        sources = (image, neighbour)
        # one patch after the other (crop, flip, colour): the RNG order the device mode draws in
        cut = [self.patch_views[k % 2](crop_patch(sources[src], box, self.patch_size))
               for k, (src, box) in enumerate(patches)]
        return {"views": views, "roi_intra": torch.stack(cut[:2]), "roi_inter": torch.stack(cut[2:]),
                "roi_events": torch.tensor([events[k] for k in ROI_EVENTS])}

    def _draw(self, image: ImageOrSize, boxes: Any, neighbour: ImageOrSize | None,
              pairs: tuple[Any, Any] | None) -> dict[str, Any]:
        """The device mode: the loader path's draws, no pixels."""
        width, height = _size(image)
        neighbour_size = None if neighbour is None else _size(neighbour)
        events, patches = self._draw_boxes((width, height), boxes, neighbour_size, pairs)
        views = draw_image_views(self.image_augs, (height, width))
        params = [draw_patch_params(self.patch_augs[k % 2], box) for k, (_, box) in enumerate(patches)]
        return {"view_params": [p.as_tensors() for p in views], "patch_params": [p.as_tensors() for p in params],
                "patch_source": torch.tensor([src for src, _ in patches]),
                "roi_events": torch.tensor([events[k] for k in ROI_EVENTS])}

    def __repr__(self) -> str:
        return (f"RoIPairViews(image_size={self.image_size}, patch_size={self.patch_size}, "
                f"augment_on={self.augment_on!r})")
