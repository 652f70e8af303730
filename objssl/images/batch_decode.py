"""Batched JPEG decoding on a device (nvJPEG through ``torchvision.io.decode_jpeg``), falling back per file.

:func:`decode_batch` turns a batch of encoded images (the raw bytes of files or tar members) into
``uint8 [3, H, W]`` tensors on ``device``, with what :func:`objssl.images.decode.load_rgb` gives as
the reference: the same images are refused (:class:`BadImageError`, returned in place of the tensor
so the caller counts it as a skip, never raised) and the pixels are those of Pillow's decode up to
the JPEG decoder's rounding (libjpeg-turbo vs Pillow's: a few grey levels at most).

Which images take the batched call: baseline JPEGs whose header (read by Pillow, no pixel data)
says ``RGB`` or ``L``, no EXIF rotation, and a shorter side of at least ``min_side``. Everything else
(PNG and the other formats, CMYK/YCCK JPEGs, rotated ones) is decoded by :func:`rgb_from_bytes` on
the CPU and moved to the device: those need Pillow's conversions. If the batched call fails (one
corrupt file fails the whole call), each file of it is decoded alone; a file the device decoder
refuses is decoded by Pillow, which either reads it (Pillow is more lenient with some odd files) or
reports why it is bad.

Where it plugs in: the loader path decodes in the DataLoader workers with Pillow (one image at a
time, before the PIL view transforms), and views need decoded pixels there. A batched decode on the
training device belongs after collate, once views are made on the device from raw bytes; the
setting ``data.decode`` (:func:`decode_device`) chooses its device. See docs/data.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from objssl.errors import ConfigError
from objssl.images.decode import BadImageError, _orientation, open_bytes, rgb_from_bytes

__all__ = ["DECODE_SETTINGS", "decode_device", "decode_batch"]

DECODE_SETTINGS = ("auto", "cpu", "cuda")
_JPEG_SOI = b"\xff\xd8\xff"
# torchvision 0.29 warns on every call that its image codecs are deprecated (in favour of torchcodec)
_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def decode_device(setting: str) -> str:
    """``"cuda"`` or ``"cpu"`` for ``data.decode`` (``auto``: cuda when a CUDA device is available).

    Raises:
        ConfigError: an unknown setting, or ``cuda`` without a CUDA device.
    """
    if setting not in DECODE_SETTINGS:
        raise ConfigError(f"data.decode={setting!r}: expected one of {', '.join(DECODE_SETTINGS)}")
    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise ConfigError("data.decode=cuda, but torch sees no CUDA device (use auto or cpu)")
    return "cuda" if setting == "cuda" or (setting == "auto" and available) else "cpu"


@contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION)
        yield


def _batchable(data: bytes, path: str, min_side: int) -> bool:
    """Whether the device decoder gives what :func:`load_rgb` gives (raises BadImageError for a bad header)."""
    if not data.startswith(_JPEG_SOI):
        return False
    with open_bytes(data, path) as img:
        w, h = img.size
        if min(w, h) < min_side:
            raise BadImageError(path, f"image is {w}x{h} px, smaller than min_side={min_side}")
        return img.format == "JPEG" and img.mode in ("RGB", "L") and _orientation(img) == 1


def _pillow(data: bytes, path: str, min_side: int, device: str) -> torch.Tensor:
    rgb = np.asarray(rgb_from_bytes(data, path, min_side=min_side))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).to(device)


def _device_decode(tensors: list[torch.Tensor], device: str) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with _quiet():
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))


def decode_batch(
    datas: Sequence[bytes],
    paths: Sequence[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    min_side: int = 1,
) -> list[torch.Tensor | BadImageError]:
    """Decode encoded images to ``uint8 [3, H, W]`` tensors on ``device`` (see the module docstring).

    Args:
        datas: each image's encoded bytes.
        paths: their names, for error messages (default ``"<bytes i>"``).
        device: where the JPEGs are decoded and every result is put (``"cuda"``: nvJPEG).
        min_side: images with a shorter side are refused, as :func:`load_rgb` does.

    Returns:
        one entry per input, in order: the image, or the :class:`BadImageError` saying why it
        cannot be used (the caller counts it as a skipped image).
    """
    names = list(paths) if paths is not None else [f"<bytes {i}>" for i in range(len(datas))]
    device = str(device)
    results: list[torch.Tensor | BadImageError | None] = [None] * len(datas)
    batch: list[int] = []
    for i, (data, path) in enumerate(zip(datas, names)):
        try:
            if _batchable(data, path, min_side):
                batch.append(i)
            else:
                results[i] = _pillow(data, path, min_side, device)
        except BadImageError as exc:
            results[i] = exc
    tensors = [torch.frombuffer(bytearray(datas[i]), dtype=torch.uint8) for i in batch]
    try:
        decoded = _device_decode(tensors, device) if batch else []
    except RuntimeError:  # one bad file fails the whole call: decode them one by one
        decoded = []
        for i, t in zip(batch, tensors):
            try:
                decoded.append(_device_decode([t], device)[0])
            except RuntimeError:
                decoded.append(None)
    for i, image in zip(batch, decoded):
        if image is None:
            try:  # Pillow reads some files the device decoder refuses, or says what is wrong
                image = _pillow(datas[i], names[i], min_side, device)
            except BadImageError as exc:
                image = exc
        results[i] = image
    return results  # type: ignore[return-value]
