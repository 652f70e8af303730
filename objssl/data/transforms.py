"""Image-level view augmentations on ``torchvision.transforms.v2`` (BYOL family).

Parameters follow BYOL as used by ORL's stage 1 (see docs/methods.md): RandomResizedCrop 224 with scale
(0.08, 1) and bilinear resizing, horizontal flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8,
grayscale 0.2, Gaussian blur σ ~ U(0.1, 2) with p 1.0 (view 1) / 0.1 (view 2), solarize at 128 with
p 0 (view 1) / 0.2 (view 2), ImageNet normalisation.

All random draws use torch's global RNG, so a caller that seeds it per sample (the objssl dataset
does) gets reproducible views regardless of worker count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ViewAugmentation",
    "blur_kernel_size",
    "photometric_transform",
    "image_view_transform",
    "MultiViewTransform",
    "BYOL_VIEWS",
    "MULTI_VIEW_PROVIDES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewAugmentation:
    """Parameters of one view's augmentation."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    interpolation: str = "bilinear"


#: BYOL's two asymmetric views (ORL stage 1; see docs/methods.md)
BYOL_VIEWS = (
    ViewAugmentation(blur_p=1.0, solarize_p=0.0),
    ViewAugmentation(blur_p=0.1, solarize_p=0.2),
)


def blur_kernel_size(size: int) -> int:
    """Gaussian blur kernel side for a view of side ``size``: ~10% of it, odd (23 px at 224, as in
    BYOL/SimCLR); the loader's and the device's blur share it."""
    k = max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


def photometric_transform(aug: ViewAugmentation, *, normalize: bool = True, to_float: bool = True) -> v2.Transform:
    """Colour ops of one view on a uint8 image tensor, ending in a normalised float tensor
    (``to_float=False``: the colour ops only, uint8 in and out, e.g. UniVIP's instance canvas)."""
    if normalize and not to_float:
        raise ValueError("photometric_transform: normalize needs to_float")
    ops: list[v2.Transform] = [
        v2.RandomApply([v2.ColorJitter(*aug.jitter)], p=aug.jitter_p),
        v2.RandomGrayscale(p=aug.grayscale_p),
    ]
    if aug.blur_p > 0:
        blur = v2.GaussianBlur(blur_kernel_size(aug.size), sigma=aug.blur_sigma)
        ops.append(v2.RandomApply([blur], p=aug.blur_p))
    if aug.solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=aug.solarize_p))
    if to_float:
        ops.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        ops.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(ops)


def image_view_transform(aug: ViewAugmentation) -> v2.Transform:
    """Geometry (random resized crop + flip) then colour, for an image-level view."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(
                aug.size,
                scale=aug.scale,
                ratio=aug.ratio,
                interpolation=InterpolationMode(aug.interpolation),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(p=aug.hflip_p),
            photometric_transform(aug),
        ]
    )


#: the batch fields :class:`MultiViewTransform` provides (cf. :func:`objssl.data.views.preset_provides`)
MULTI_VIEW_PROVIDES: frozenset[str] = frozenset({"views"})


class MultiViewTransform:
    """One transform per view of the same image: ``image → {"views": [Tensor[3, H, W], ...]}``."""

    provides = MULTI_VIEW_PROVIDES

    def __init__(self, transforms: Sequence[Callable[[object], Tensor]]) -> None:
        self.transforms = list(transforms)

    @classmethod
    def from_augmentations(cls, augs: Sequence[ViewAugmentation]) -> MultiViewTransform:
        return cls([image_view_transform(a) for a in augs])

    def __call__(self, image: object) -> dict[str, list[Tensor]]:
        return {"views": [t(image) for t in self.transforms]}

    def __repr__(self) -> str:
        return f"MultiViewTransform({self.transforms})"
