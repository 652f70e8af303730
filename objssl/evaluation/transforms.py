"""The deterministic input transforms of the protocols (torchvision.transforms.v2).

* :func:`centre_crop_transform` (kNN, linear; DINO's and InstDisc's eval transform): resize the
  short side to ``image_size·256/224``, centre crop ``image_size``.
* :func:`voc07_svm_transform` (ORL's ``benchmarks/extract_info/voc07.py``): ``Resize(256)`` (short
  side), then ``Resize((224, 224))``, no centre crop; at another ``image_size`` both scale with it.

Both end with ImageNet mean/std. :func:`transform_key` names a transform for the feature cache: a
different transform never reads another's cached features.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "centre_crop_transform", "voc07_svm_transform", "transform_key"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalised() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def centre_crop_transform(image_size: int = 224) -> v2.Compose:
    resize = int(round(image_size * 256 / 224))
    return v2.Compose([v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
                       v2.CenterCrop(image_size), *_to_normalised()])


def voc07_svm_transform(image_size: int = 224) -> v2.Compose:
    resize = int(round(image_size * 256 / 224))
    return v2.Compose([v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
                       v2.Resize((image_size, image_size), interpolation=InterpolationMode.BILINEAR, antialias=True),
                       *_to_normalised()])


def transform_key(transform: v2.Compose) -> str:
    """A stable text naming every step and its parameters (the repr of torchvision's v2 transforms)."""
    return repr(transform)
