"""The catalogue of object cut-outs: RGBA images grouped into categories by folder.

Folder rule for ``--objects DIR`` (:func:`discover_categories`):

* a folder directly below ``DIR`` (depth 1) that holds image files itself is one category;
* a depth-1 folder that holds no image files itself is a group: each of its subfolders (depth 2)
  is one category;
* a category holds every image file below its folder, subfolders included;
* the category name is the folder's path below ``DIR`` with ``/`` written ``-``
  (``animals/birds`` → ``animals-birds``); image files directly in ``DIR`` belong to no category.

The default catalogue (:data:`TUXPAINT_CATEGORIES`) is a fixed choice of folders of the Debian
package ``tuxpaint-stamps-default`` (GPL-2): it is read from ``/usr/share/tuxpaint/stamps`` at run
time and nothing of it is copied into objssl. Its letter, number and symbol folders are left out.

A cut-out must have an alpha channel that is neither empty nor fully opaque; other images are
skipped and counted by reason (:attr:`Catalogue.skipped`). Each cut-out is cropped to the extent
of its alpha and shrunk once, so that its longer side is at most ``max_side``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from objssl.errors import DataError
from objssl.images.sources import IMAGE_EXTENSIONS

__all__ = [
    "Category", "Catalogue", "Cutout", "TUXPAINT_DIR", "TUXPAINT_CATEGORIES",
    "ALPHA_THRESHOLD", "discover_categories", "tuxpaint_categories", "load_catalogue",
]

#: where the Debian package tuxpaint-stamps-default installs its stamps
TUXPAINT_DIR = "/usr/share/tuxpaint/stamps"

#: the default categories: folders below :data:`TUXPAINT_DIR` with 7 to 70 cut-outs each
TUXPAINT_CATEGORIES = (
    "animals/birds", "animals/fish", "animals/insects", "animals/mammals",
    "clothes", "food/fruit", "food/vegetables", "household/tools", "plants/flowers",
    "plants/trees", "space/planets", "town/houses", "town/monuments", "town/roadsigns", "vehicles",
)

#: alpha at or above this value counts as part of the object (masks, boxes, labels)
ALPHA_THRESHOLD = 128

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class Category:
    """A category: its name and the image files below its folder (sorted)."""

    name: str
    folder: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Cutout:
    """One object cut-out: straight (not premultiplied) RGBA pixels cropped to the alpha's extent."""

    path: str
    rgba: np.ndarray  # uint8 [H, W, 4]


@dataclass
class Catalogue:
    """Categories that kept at least one usable cut-out, with counts of the files skipped."""

    names: list[str]
    cutouts: list[list[Cutout]]
    source: str
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.names)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_below(folder: str) -> tuple[str, ...]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in filenames if _is_image(f))
    return tuple(sorted(found))


def _subfolders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _has_images(folder: str) -> bool:
    return any(e.is_file() and _is_image(e.name) for e in os.scandir(folder))


def discover_categories(root: str) -> list[Category]:
    """The categories below ``root`` by the folder rule of this module's docstring.

    Raises:
        DataError: ``root`` is missing, not a folder, or holds no category with an image file.
    """
    if not os.path.isdir(root):
        raise DataError(f"--objects {root}: no such folder")
    found: list[Category] = []
    for top in _subfolders(root):
        top_dir = os.path.join(root, top)
        if _has_images(top_dir):
            found.append(Category(top, top_dir, _images_below(top_dir)))
            continue
        for sub in _subfolders(top_dir):
            sub_dir = os.path.join(top_dir, sub)
            files = _images_below(sub_dir)
            if files:
                found.append(Category(f"{top}-{sub}", sub_dir, files))
    if not found:
        raise DataError(
            f"--objects {root}: no categories found (expected category folders of RGBA images at "
            "depth 1, or group folders holding category folders at depth 2)"
        )
    return found


def tuxpaint_categories(root: str = TUXPAINT_DIR) -> list[Category]:
    """The default categories (:data:`TUXPAINT_CATEGORIES`) below ``root``.

    Raises:
        DataError: ``root`` or one of the folders is missing (the package is not installed).
    """
    missing = [c for c in TUXPAINT_CATEGORIES if not os.path.isdir(os.path.join(root, c))]
    if not os.path.isdir(root) or missing:
        what = root if not os.path.isdir(root) else os.path.join(root, missing[0])
        raise DataError(
            f"default object cut-outs not found ({what} is missing): "
            "apt-get install tuxpaint-stamps-default, or give --objects DIR"
        )
    return [
        Category(c.replace("/", "-"), os.path.join(root, c), _images_below(os.path.join(root, c)))
        for c in TUXPAINT_CATEGORIES
    ]


def _read_rgba(path: str) -> tuple[np.ndarray | None, str | None]:
    """``(rgba, None)`` or ``(None, skip reason)``."""
    try:
        with Image.open(path) as img:
            img.load()
            has_alpha = img.mode in _ALPHA_MODES or (img.mode == "P" and img.has_transparency_data) \
                or "transparency" in img.info
            if not has_alpha:
                return None, "no alpha channel"
            rgba = np.asarray(img.convert("RGBA"))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None, "unreadable"
    return rgba, None


def _fit(rgba: np.ndarray, max_side: int) -> np.ndarray:
    """Crop to the alpha's extent and shrink so the longer side is at most ``max_side``."""
    ys, xs = np.nonzero(rgba[..., 3] >= ALPHA_THRESHOLD)
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = rgba.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # premultiplied resampling: colour hidden under transparent pixels must not bleed in
        small = Image.fromarray(rgba, "RGBA").convert("RGBa").resize(size, Image.Resampling.LANCZOS)
        rgba = np.asarray(small.convert("RGBA"))
    return np.ascontiguousarray(rgba)


def load_catalogue(categories: list[Category], source: str, *, max_side: int) -> Catalogue:
    """Read every cut-out of ``categories``; categories left without a usable one are dropped.

    Raises:
        DataError: no category keeps a usable cut-out (the message gives the skip counts).
    """
    skipped: Counter = Counter()
    names: list[str] = []
    cutouts: list[list[Cutout]] = []
    for category in categories:
        kept = []
        for path in category.files:
            rgba, reason = _read_rgba(path)
            if reason is None:
                alpha = rgba[..., 3]
                if not (alpha >= ALPHA_THRESHOLD).any():
                    reason = "alpha empty"
                elif (alpha == 255).all():
                    reason = "alpha fully opaque"
            if reason is not None:
                skipped[reason] += 1
                continue
            kept.append(Cutout(path, _fit(rgba, max_side)))
        if kept:
            names.append(category.name)
            cutouts.append(kept)
        else:
            skipped["categories without a usable cut-out"] += 1
    if not names:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        raise DataError(f"{source}: no usable RGBA cut-outs in any category ({counts})")
    return Catalogue(names, cutouts, source, skipped)

