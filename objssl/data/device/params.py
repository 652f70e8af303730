"""The random parameters of one view of one sample, drawn in the loader (:class:`ViewParams`), and
their batch (:class:`ViewBatch`) that the device-side ops consume.

The draws make the *same* calls on torch's global RNG, in the same order, as the torchvision
transforms of the loader path (:func:`objssl.data.transforms.image_view_transform` and
:func:`~objssl.data.transforms.photometric_transform`), so under the dataset's per-sample seed both
paths see the same crop, flip and colour parameters, and leave the RNG in the same state:

1. crop: ``RandomResizedCrop.get_params`` (``uniform_`` scale, ``uniform_`` log-ratio per try,
   then two ``randint``; up to 10 tries);
2. flip: ``torch.rand(1) < hflip_p`` (what ``v2.RandomHorizontalFlip`` draws);
3. jitter: ``torch.rand(1) < jitter_p`` (``v2.RandomApply``); when applied, ``v2.ColorJitter``'s
   own ``make_params``: ``torch.randperm(4)`` then one ``uniform_`` per non-trivial factor
   (brightness, contrast, saturation, hue);
4. grayscale: ``torch.rand(1) < grayscale_p``;
5. blur (only when ``blur_p > 0``): ``torch.rand(1) < blur_p``, then ``v2.GaussianBlur.make_params``
   (one ``uniform_`` sigma) when applied;
6. solarize (only when ``solarize_p > 0``): ``torch.rand(1) < solarize_p``.

Draws that torchvision makes itself are made by torchvision's own ``get_params`` / ``make_params``;
the coins are ``torch.rand(1) < p`` because that is what ``v2.RandomApply`` and every
``_RandomApplyTransform`` compute (``torch.rand(1) >= p`` skips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import Tensor
from torchvision.transforms import RandomResizedCrop, v2

from objssl.data.transforms import ViewAugmentation

__all__ = [
    "IDENTITY_FACTORS",
    "ColourParams",
    "ViewParams",
    "ViewBatch",
    "draw_colour",
    "draw_crop",
    "draw_image_view",
    "draw_image_views",
]

#: brightness, contrast, saturation, hue factors that change nothing
IDENTITY_FACTORS = (1.0, 1.0, 1.0, 0.0)


@dataclass(frozen=True)
class ColourParams:
    """The colour draw of one view of one sample.

    Attributes:
        jitter: whether colour jitter is applied.
        factors: brightness, contrast, saturation, hue factors (identity when a factor's range is
            trivial or jitter is off).
        order: the order the four jitter ops run in (``0`` brightness, ``1`` contrast,
            ``2`` saturation, ``3`` hue), as ``v2.ColorJitter``'s ``fn_idx``.
        grayscale: whether the view is turned grey (three equal channels).
        blur_sigma: Gaussian blur sigma in view pixels; ``0`` means no blur.
        solarize: whether values at or above 128/255 are inverted.
    """

    jitter: bool = False
    factors: tuple[float, float, float, float] = IDENTITY_FACTORS
    order: tuple[int, int, int, int] = (0, 1, 2, 3)
    grayscale: bool = False
    blur_sigma: float = 0.0
    solarize: bool = False


@dataclass(frozen=True)
class ViewParams:
    """One view of one sample: where its crop lies, whether it is flipped, and its colour draw.

    Attributes:
        crop: ``(x1, y1, x2, y2)`` in source-image pixels (integer-valued, as drawn).
        flip: horizontal flip after the crop.
        colour: the colour draw.
    """

    crop: tuple[float, float, float, float]
    flip: bool = False
    colour: ColourParams = field(default_factory=ColourParams)

    def as_tensors(self) -> dict[str, Tensor]:
        """The parameters as small tensors (what a loader sample carries; :meth:`ViewBatch.collate`)."""
        c = self.colour
        return {
            "crop": torch.tensor(self.crop, dtype=torch.float32),
            "flip": torch.tensor(self.flip),
            "jitter": torch.tensor(c.jitter),
            "factors": torch.tensor(c.factors, dtype=torch.float32),
            "order": torch.tensor(c.order, dtype=torch.long),
            "grayscale": torch.tensor(c.grayscale),
            "blur_sigma": torch.tensor(c.blur_sigma, dtype=torch.float32),
            "solarize": torch.tensor(c.solarize),
        }


@dataclass
class ViewBatch:
    """The parameters of one view for a batch of ``B`` samples (one row per sample).

    Attributes: ``crop float [B, 4]``, ``flip bool [B]``, ``jitter bool [B]``, ``factors float [B, 4]``,
    ``order long [B, 4]``, ``grayscale bool [B]``, ``blur_sigma float [B]``, ``solarize bool [B]``
    (meanings as in :class:`ColourParams` / :class:`ViewParams`).
    """

    crop: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    grayscale: Tensor
    blur_sigma: Tensor
    solarize: Tensor

    FIELDS = ("crop", "flip", "jitter", "factors", "order", "grayscale", "blur_sigma", "solarize")

    @classmethod
    def collate(cls, rows: Sequence[dict[str, Tensor]]) -> ViewBatch:
        """Stack the :meth:`ViewParams.as_tensors` of ``B`` samples."""
        if not rows:
            raise ValueError("ViewBatch.collate: no samples")
        return cls(**{name: torch.stack([r[name] for r in rows]) for name in cls.FIELDS})

    @classmethod
    def stack(cls, params: Sequence[ViewParams]) -> ViewBatch:
        """The batch of ``B`` samples' :class:`ViewParams`."""
        return cls.collate([p.as_tensors() for p in params])

    def __len__(self) -> int:
        return int(self.crop.shape[0])

    def to(self, device: torch.device | str) -> ViewBatch:
        return ViewBatch(**{name: getattr(self, name).to(device, non_blocking=True) for name in self.FIELDS})


def _coin(p: float) -> bool:
    # v2.RandomApply and _RandomApplyTransform skip when torch.rand(1) >= p
    return bool(torch.rand(1) < p)


@lru_cache(maxsize=64)
def _colour_transforms(aug: ViewAugmentation) -> tuple[v2.ColorJitter, v2.GaussianBlur]:
    # built once per view: constructing a v2 transform costs more than drawing from it
    return v2.ColorJitter(*aug.jitter), v2.GaussianBlur(3, sigma=aug.blur_sigma)  # the kernel size draws nothing


def draw_colour(aug: ViewAugmentation) -> ColourParams:
    """The colour draw of :func:`~objssl.data.transforms.photometric_transform` ``(aug)``, same RNG calls."""
    jitter_t, blur_t = _colour_transforms(aug)
    jitter, factors, order = False, IDENTITY_FACTORS, (0, 1, 2, 3)
    if _coin(aug.jitter_p):
        p = jitter_t.make_params([])
        jitter = True
        order = tuple(int(i) for i in p["fn_idx"])
        drawn = (p["brightness_factor"], p["contrast_factor"], p["saturation_factor"], p["hue_factor"])
        factors = tuple(float(ident if f is None else f) for f, ident in zip(drawn, IDENTITY_FACTORS))
    grayscale = _coin(aug.grayscale_p)
    sigma = 0.0
    if aug.blur_p > 0 and _coin(aug.blur_p):
        sigma = float(blur_t.make_params([])["sigma"][0])
    solarize = aug.solarize_p > 0 and _coin(aug.solarize_p)
    return ColourParams(jitter, factors, order, grayscale, sigma, solarize)  # type: ignore[arg-type]


def draw_crop(aug: ViewAugmentation, image_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """A random resized crop of an ``(H, W)`` image, ``(x1, y1, x2, y2)``, drawn as ``v2.RandomResizedCrop``."""
    dummy = torch.empty(0, *image_hw)  # get_params reads only the size
    top, left, h, w = RandomResizedCrop.get_params(dummy, list(aug.scale), list(aug.ratio))
    return (float(left), float(top), float(left + w), float(top + h))


def draw_image_view(aug: ViewAugmentation, image_hw: tuple[int, int]) -> ViewParams:
    """The draw of :func:`~objssl.data.transforms.image_view_transform` ``(aug)`` on an ``(H, W)`` image."""
    crop = draw_crop(aug, image_hw)
    flip = _coin(aug.hflip_p)
    return ViewParams(crop, flip, draw_colour(aug))


def draw_image_views(augs: Sequence[ViewAugmentation], image_hw: tuple[int, int]) -> list[ViewParams]:
    """The draws of :class:`~objssl.data.transforms.MultiViewTransform` ``.from_augmentations(augs)``."""
    return [draw_image_view(a, image_hw) for a in augs]
