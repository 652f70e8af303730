"""One view of a whole batch, on the training device: the loader path's ops, in its order, each
with the sample's own parameters (:class:`~objssl.data.device.params.ViewBatch`).

crop + resize → flip (the geometry; a ``same:J`` view instead resizes view ``J``'s geometry) →
colour jitter (per-sample factors and order) → grayscale → Gaussian blur (per-sample sigma) →
solarize → ImageNet normalisation → box cutout (squares drawn in the loader). The loader path runs the colour ops on
uint8 pixels (each op rounds or truncates to 8 bits); this one stays in float, so for the same
parameters the two differ by that quantisation (a few /255; tests/data/device/test_pipeline.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.blur import gaussian_blur
from objssl.data.device.colour import color_jitter, random_grayscale, random_solarize
from objssl.data.device.geometry import RESIZE_METHODS, horizontal_flip, resized_crop
from objssl.data.device.params import ViewBatch
from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ViewAugmentation, blur_kernel_size
from objssl.data.views.box_cutout import fill_squares
from objssl.data.views.view_spec import BoxViewSpec

__all__ = ["DeviceView", "to_unit_float", "view_geometry", "resize_geometry", "view_colour", "apply_view", "apply_views"]


@dataclass(frozen=True)
class DeviceView:
    """The fixed (non-random) part of one view: what every sample of the batch shares.

    Attributes:
        size: output ``(height, width)``.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        blur_kernel: the Gaussian kernel side, as the loader path's (~10 % of the view side, odd).
        normalize: ImageNet mean/std at the end (off: float in ``[0, 1]``).
        resize: ``"roi_align"``, ``"per_sample"`` (:mod:`objssl.data.device.geometry`) or ``"auto"``:
            roi_align on CUDA (one kernel for the batch), per_sample elsewhere (on a CPU, roi_align's
            many samples per output pixel cost about twice torchvision's separable resize).
        source_view: ``J`` for a view made by resizing view ``J``'s geometry (``crop="same:J"``,
            SoCo*'s fourth view), before this view's own colour ops; None: cut from the source image.
    """

    size: tuple[int, int]
    interpolation: str = "bilinear"
    blur_kernel: int = 23
    normalize: bool = True
    resize: str = "auto"
    source_view: int | None = None

    def __post_init__(self) -> None:
        if self.resize not in (*RESIZE_METHODS, "auto"):
            raise ValueError(f"DeviceView: resize must be one of {(*RESIZE_METHODS, 'auto')}, got {self.resize!r}")

    def resize_method(self, device: torch.device) -> str:
        """The crop + resize method used on ``device``."""
        if self.resize != "auto":
            return self.resize
        return "roi_align" if device.type == "cuda" else "per_sample"

    @classmethod
    def from_augmentation(cls, aug: ViewAugmentation, **overrides: object) -> DeviceView:
        """The view :func:`~objssl.data.transforms.image_view_transform` ``(aug)`` makes (blur kernel of ``aug.size``)."""
        kwargs = dict(size=(aug.size, aug.size), interpolation=aug.interpolation, blur_kernel=blur_kernel_size(aug.size))
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_view_spec(cls, spec: BoxViewSpec, *, normalize: bool = True, **overrides: object) -> DeviceView:
        """The view :class:`~objssl.data.views.BoxAwareViews` makes of ``spec`` (its blur kernel
        follows the view's height, as there)."""
        kwargs = dict(size=spec.hw, interpolation=spec.interpolation, blur_kernel=blur_kernel_size(spec.hw[0]),
                      normalize=normalize, source_view=spec.source_view())
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]


def to_unit_float(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 pixels as ``dtype`` in ``[0, 1]`` (``v2.ToDtype(..., scale=True)``)."""
    return TF.to_dtype(images, dtype, scale=True)


def view_geometry(images: Tensor, params: ViewBatch, view: DeviceView) -> Tensor:
    """Crop + resize + flip: ``float [B, 3, H, W]`` edge-padded source images in ``[0, 1]`` (see
    :func:`~objssl.data.device.geometry.pad_images`) → ``float [B, 3, h, w]``."""
    if len(params) != images.shape[0]:
        raise ValueError(f"apply_view: {images.shape[0]} images but parameters for {len(params)} samples")
    x = resized_crop(images, params.crop, view.size, interpolation=view.interpolation,
                     method=view.resize_method(images.device))
    return horizontal_flip(x, params.flip)


def resize_geometry(x: Tensor, view: DeviceView) -> Tensor:
    """Another view's geometry resized to ``view.size`` (a ``same:J`` view; the loader's
    ``TF.resize(..., antialias=True)``, clamped for bicubic as uint8 pixels are)."""
    out = TF.resize(x, list(view.size), interpolation=InterpolationMode(view.interpolation), antialias=True)
    return out.clamp_(0.0, 1.0) if view.interpolation == "bicubic" else out


def view_colour(x: Tensor, params: ViewBatch, view: DeviceView) -> Tensor:
    """The colour ops of one view, each sample with its own draw, then the normalisation."""
    x = color_jitter(x, params.jitter, params.factors, params.order)
    x = random_grayscale(x, params.grayscale)
    x = gaussian_blur(x, params.blur_sigma, view.blur_kernel)
    x = random_solarize(x, params.solarize)
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD)) if view.normalize else x


def apply_view(images: Tensor, params: ViewBatch, view: DeviceView) -> Tensor:
    """``float [B, 3, H, W]`` source images in ``[0, 1]`` (edge-padded; see
    :func:`~objssl.data.device.geometry.pad_images`) → ``float [B, 3, h, w]`` views."""
    return view_colour(view_geometry(images, params, view), params, view)


@torch.no_grad()
def apply_views(
    images: Tensor,
    params: Sequence[ViewBatch],
    views: Sequence[DeviceView],
    dtype: torch.dtype = torch.float32,
    cutouts: Sequence[Tensor | None] | None = None,
) -> list[Tensor]:
    """Every view of a batch from ``uint8 [B, 3, H, W]`` padded source images (converted once).

    ``cutouts``: per view, ``long [B, K, 4]`` squares to zero after normalisation
    (:func:`objssl.data.views.box_cutout.draw_cutout_squares`) or None.
    """
    if len(params) != len(views):
        raise ValueError(f"apply_views: {len(views)} views but {len(params)} parameter sets")
    x = to_unit_float(images, dtype)
    geometry: list[Tensor] = []
    out: list[Tensor] = []
    for v, (p, view) in enumerate(zip(params, views)):
        p = p.to(images.device)
        j = view.source_view
        if j is not None and not 0 <= j < v:
            raise ValueError(f"apply_views: view {v} resizes view {j}, which is not an earlier view")
        g = resize_geometry(geometry[j], view) if j is not None else view_geometry(x, p, view)
        geometry.append(g)
        y = view_colour(g, p, view)
        squares = cutouts[v] if cutouts is not None else None
        out.append(fill_squares(y, squares) if squares is not None else y)
    return out
