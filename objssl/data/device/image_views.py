"""Image-level views (BYOL's) with their pixels made on the training device: the loader draws each
view's parameters (:func:`~objssl.data.device.params.draw_image_views`, the draws of
:class:`objssl.data.transforms.MultiViewTransform`) and sends the decoded image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.augment import AUGMENT_ON, DeviceAugment
from objssl.data.device.params import draw_image_views
from objssl.data.device.pipeline import DeviceView
from objssl.data.transforms import MULTI_VIEW_PROVIDES, MultiViewTransform, ViewAugmentation

__all__ = ["DeviceImageViews", "image_views"]


class DeviceImageViews:
    """``image → {"source": uint8 [3, H, W], "view_params": [...]}``; ``(H, W) → {"view_params": [...]}``
    (only the size: the caller sends the pixels). :attr:`device_views` makes the ``views`` of a batch."""

    provides = MULTI_VIEW_PROVIDES
    augment_on = "device"

    def __init__(self, augs: Sequence[ViewAugmentation]) -> None:
        self.augs = tuple(augs)
        self.device_views = DeviceAugment(tuple(DeviceView.from_augmentation(a) for a in self.augs))

    def __call__(self, image: Any) -> dict[str, Any]:
        if isinstance(image, tuple):
            return {"view_params": [p.as_tensors() for p in draw_image_views(self.augs, image)]}
        img: Tensor = TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image
        hw = (int(img.shape[-2]), int(img.shape[-1]))
        return {"source": img, "view_params": [p.as_tensors() for p in draw_image_views(self.augs, hw)]}

    def __repr__(self) -> str:
        return f"DeviceImageViews(views={len(self.augs)})"


def image_views(augs: Sequence[ViewAugmentation], augment_on: str = "loader") -> MultiViewTransform | DeviceImageViews:
    """The image-level views of ``augs``, made in the loader or on the training device."""
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"image_views: augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
    if augment_on == "device":
        return DeviceImageViews(augs)
    return MultiViewTransform.from_augmentations(augs)
