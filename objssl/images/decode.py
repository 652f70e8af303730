"""Robust image decoding: any file Pillow can read becomes an 8-bit RGB image, or a clear error.

:func:`load_rgb` is the one place where image files are opened. It decodes the whole file
(so truncated or corrupt data fails here, with the file's name, and not later inside a
transform), applies the EXIF orientation, and maps every pixel format to ``RGB``:

=========================  ==================================================================
mode                       conversion
=========================  ==================================================================
``RGB``                    unchanged
``L``, ``1``               grey copied to the three channels
``P`` (palette)            palette lookup; with a transparent index, as ``RGBA`` below
``RGBA``, ``LA``, ``PA``   alpha **composited over** ``background`` (white by default): the
                           colour stored under fully transparent pixels is arbitrary (often
                           black), so dropping alpha would show garbage
``CMYK`` (incl. JPEG       Pillow's CMYK→RGB (Adobe-inverted and YCCK JPEGs are already
CMYK/YCCK)                 decoded to plain CMYK by the JPEG plugin); no ICC colour management
``I;16*``, ``I``, ``F``    **stretched by the image's actual range**: min → 0, max → 255
                           (non-finite values count as 0). High-bit files use very different
                           full scales (12-bit sensors in 16-bit PNG/TIFF, signed depth maps,
                           float radiance), and Pillow's own ``convert`` clips at 255, which
                           turns most 16-bit images white. A constant image keeps its value
                           (scaled by 1/257 for 16-bit, clipped to 0..255 otherwise).
anything else              ``Image.convert("RGB")``
=========================  ==================================================================

A reduced decode (``max_reduction``, JPEG only): Pillow's draft mode decodes at 1/2, 1/4 or 1/8 of
the size by DCT scaling, which is several times faster and already a proper (block-averaging)
downscale; the factor used never exceeds the one asked for, so each side is at least
``ceil(side / max_reduction)``. Other formats are decoded at full size whatever is asked.

An image inside a WebDataset tar shard is named ``<shard>.tar/<key>``
(:mod:`objssl.images.tar_shards`) and read like a file.

Failures raise :class:`BadImageError` (a ``ValueError``) with the path and a short reason.
Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is respected, and
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from objssl.images.tar_shards import read_member, split_member_path

__all__ = ["BadImageError", "load_rgb", "image_size", "to_rgb", "open_bytes", "rgb_from_bytes", "read_encoded",
           "encoded_size"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Exceptions Pillow's decoders raise on corrupt data (SyntaxError: e.g. "broken PNG file").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
# EXIF orientations 5..8 swap width and height (transpose / rotate by 90 degrees).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


class BadImageError(ValueError):
    """An image file that cannot be used.

    Attributes:
        path: the file, as given.
        reason: what is wrong, e.g. ``"no such file"`` or
            ``"image is 12x9 px, smaller than min_side=32"``.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # keep (path, reason) when the error crosses a process boundary (DataLoader workers)
        return (type(self), (self.path, self.reason))


def _open(path: PathLike) -> Image.Image:
    """``Image.open`` with file-system and format errors turned into :class:`BadImageError`.

    ``<shard>.tar/<key>`` (:func:`objssl.images.tar_shards.member_path`) opens that member's bytes.
    """
    member = split_member_path(os.fspath(path))
    if member is not None:
        return _open_member(path, *member)
    with _file_errors(path):
        if os.path.getsize(path) == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with _format_errors(path):
            return Image.open(path)


@contextlib.contextmanager
def _file_errors(path: PathLike) -> Iterator[None]:
    """A directory, a missing file or one we may not read, as :class:`BadImageError` naming ``path``."""
    if os.path.isdir(path):
        raise BadImageError(path, "is a directory, not an image file")
    try:
        yield
    except FileNotFoundError:
        raise BadImageError(path, "no such file") from None
    except PermissionError:
        raise BadImageError(path, "permission denied") from None


def _open_member(path: PathLike, shard: str, key: str) -> Image.Image:
    return open_bytes(_member_bytes(path, shard, key), path)


def _member_bytes(path: PathLike, shard: str, key: str) -> bytes:
    try:
        return read_member(shard, key)
    except KeyError:
        raise BadImageError(path, f"tar shard {shard} has no image member {key!r}") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot read from tar shard ({exc})") from None


def read_encoded(path: PathLike) -> bytes:
    """The encoded bytes of an image file or tar-shard member (not decoded; for a decode elsewhere,
    e.g. in batches on the training device). Errors as :func:`load_rgb`'s for a missing or empty file."""
    member = split_member_path(os.fspath(path))
    if member is not None:
        data = _member_bytes(path, *member)
    else:
        with _file_errors(path), open(path, "rb") as f:
            data = f.read()
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    return data


def encoded_size(data: bytes, path: PathLike = "<bytes>", *, min_side: int = 1) -> tuple[int, int]:
    """``(height, width)`` of encoded image bytes as :func:`load_rgb` would decode them (EXIF orientation
    applied), from the header alone; :class:`BadImageError` for an unreadable header or an image
    smaller than ``min_side``."""
    with open_bytes(data, path) as img:
        w, h = img.size
        if min(w, h) < min_side:
            raise BadImageError(path, f"image is {w}x{h} px, smaller than min_side={min_side}")
        return (w, h) if _orientation(img) in _SWAPPING_ORIENTATIONS else (h, w)


def open_bytes(data: bytes, path: PathLike = "<bytes>") -> Image.Image:
    """``Image.open`` of encoded image bytes (errors name ``path``, as :func:`load_rgb`'s do)."""
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    with _format_errors(path):
        return Image.open(io.BytesIO(data))


@contextlib.contextmanager
def _format_errors(path: PathLike) -> Iterator[None]:
    """Pillow's errors while identifying an image turned into :class:`BadImageError` naming ``path``."""
    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise  # the file itself, not its format: the caller names it
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file (format not recognised by Pillow)") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(path, f"decompression bomb: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise BadImageError(path, f"corrupt or truncated header ({exc})") from None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))  # 0x0112: EXIF Orientation
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable image unusable
        return 1


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` as :func:`load_rgb` would return it (EXIF orientation applied).

    Reads only the header, so it is cheap; it does not check that the pixel data decodes.
    Raises :class:`BadImageError` like :func:`load_rgb`.
    """
    with _open(path) as img:
        w, h = img.size
        if _orientation(img) in _SWAPPING_ORIENTATIONS:
            w, h = h, w
    return w, h


def _high_bit_to_l(img: Image.Image) -> Image.Image:
    """``I;16*`` / ``I`` / ``F`` → 8-bit ``L``, stretched by the image's actual value range."""
    a = np.asarray(img).astype(np.float32)  # astype also fixes the byte order of I;16B
    a[~np.isfinite(a)] = 0.0
    lo, hi = float(a.min()), float(a.max())
    if hi > lo:
        out = (a - lo) * (255.0 / (hi - lo))
    elif img.mode.startswith("I;16"):
        out = a / 257.0  # constant 16-bit image: keep its brightness on the 16-bit full scale
    else:
        out = a
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))  # 2-d uint8: mode L


def to_rgb(img: Image.Image, *, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a decoded image of any mode to ``RGB`` (see the module docstring for the rules).

    Args:
        img: a loaded PIL image.
        background: colour that transparent pixels are composited over.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _HIGH_BIT_MODES:
        return _high_bit_to_l(img).convert("RGB")
    if mode == "P" and img.has_transparency_data:
        img, mode = img.convert("RGBA"), "RGBA"
    elif mode == "L" and "transparency" in img.info:  # grey PNG with a transparent grey level
        img, mode = img.convert("LA"), "LA"
    elif mode == "RGB" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


#: ``max_reduction``: a factor, or a function of the image's ``(height, width)`` (EXIF orientation
#: applied) returning one; it runs once the header is read, before any pixel is decoded
Reduction = int | Callable[[int, int], int]


def load_rgb(
    path: PathLike,
    *,
    min_side: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
    max_reduction: Reduction = 1,
) -> Image.Image:
    """Decode an image file completely and return it as an 8-bit ``RGB`` PIL image.

    Args:
        path: image file (any format Pillow reads; multi-frame files give their first frame),
            or an image in a tar shard, ``<shard>.tar/<key>``.
        min_side: smallest accepted length of the shorter side, in pixels.
        background: colour that transparent pixels are composited over.
        max_reduction: a JPEG may be decoded at up to this fraction of its size (module docstring);
            a function gets ``(height, width)`` first (e.g. to draw the crops the reduction must keep).

    Returns:
        ``PIL.Image.Image`` in mode ``RGB``, EXIF orientation applied, not tied to the file.

    Raises:
        BadImageError: missing, empty, unreadable, not an image, truncated or corrupt,
            a decompression bomb, or smaller than ``min_side``.
    """
    return _decode(_open(path), path, min_side, background, max_reduction)


def rgb_from_bytes(
    data: bytes,
    path: PathLike = "<bytes>",
    *,
    min_side: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """:func:`load_rgb` of an image's encoded bytes (already read); errors name ``path``."""
    return _decode(open_bytes(data, path), path, min_side, background)


def _decode(opened: Image.Image, path: PathLike, min_side: int,
            background: tuple[int, int, int], max_reduction: Reduction = 1) -> Image.Image:
    with opened as img:
        w, h = img.size  # header size; EXIF rotation does not change the shorter side
        if min(w, h) < min_side:
            raise BadImageError(path, f"image is {w}x{h} px, smaller than min_side={min_side}")
        if callable(max_reduction):
            swap = _orientation(img) in _SWAPPING_ORIENTATIONS
            max_reduction = int(max_reduction(*((w, h) if swap else (h, w))))
        if max_reduction > 1 and img.format == "JPEG":
            # Pillow scales by the largest 1/s (s in 8, 4, 2, 1) with s <= min(w // W', h // H') for the
            # size W' x H' asked for; asking for floor(side / r) gives s <= r (side // floor(side / r)
            # < 2r), so each side stays >= side / r. The same r on both sides: orientation is irrelevant
            img.draft(img.mode, (max(1, w // max_reduction), max(1, h // max_reduction)))
        try:
            img.load()  # decode everything now, so corrupt data fails here and not in a transform
        except Image.DecompressionBombError as exc:
            raise BadImageError(path, f"decompression bomb: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise BadImageError(path, f"corrupt or truncated image data ({exc})") from None
        if _orientation(img) != 1:
            try:
                ImageOps.exif_transpose(img, in_place=True)
            except Exception as exc:  # noqa: BLE001 - a bad tag must not lose a readable image
                log.debug("%s: EXIF orientation not applied (%s)", path, exc)
        try:
            # leaving the `with` only closes the file; the decoded pixels stay with the image
            return to_rgb(img, background=background)
        except _DECODE_ERRORS as exc:
            raise BadImageError(path, f"cannot convert mode {img.mode} to RGB ({exc})") from None
