"""Compositing one scene: cut-outs pasted at random scales and positions onto a background.

Objects are pasted in order, so a later one occludes the earlier ones it overlaps. Each object's
*mask* is its alpha at or above :data:`~objssl.data.scenes.catalogue.ALPHA_THRESHOLD`; its
*visible mask* is its mask minus the masks of every object pasted after it. Visible masks are
therefore disjoint, and every annotation (box, area, label, semantic class) is derived from them.
An object whose visible mask is empty is left out of the annotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from objssl.data.scenes.backgrounds import BackgroundPool
from objssl.data.scenes.catalogue import ALPHA_THRESHOLD, Catalogue

__all__ = ["Instance", "Scene", "compose_scene", "OBJECT_SCALE", "DIFFICULT_BELOW"]

#: an object's longer side as a fraction of the scene side, drawn uniformly
OBJECT_SCALE = (0.25, 0.6)
#: an instance with less than this fraction of its mask visible is "difficult" (mostly occluded)
DIFFICULT_BELOW = 0.5


@dataclass(frozen=True)
class Instance:
    """A visible object of a scene.

    Attributes:
        category: index into the catalogue's names.
        mask: bool ``[size, size]``, the visible pixels.
        box: ``(x, y, w, h)`` in pixels, the extent of ``mask`` (COCO convention).
        visibility: visible pixels / pixels of the object's whole mask.
        cutout: path of the cut-out it was made from.
    """

    category: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    visibility: float
    cutout: str

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def difficult(self) -> bool:
        return self.visibility < DIFFICULT_BELOW


@dataclass(frozen=True)
class Scene:
    """A composited scene: RGB pixels and its visible instances, in paste order."""

    image: np.ndarray  # uint8 [size, size, 3]
    instances: list[Instance]


def _scaled(rgba: np.ndarray, long_side: int, flip: bool) -> np.ndarray:
    h, w = rgba.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = Image.fromarray(rgba, "RGBA").convert("RGBa").resize(size, Image.Resampling.BILINEAR)
    out = np.asarray(img.convert("RGBA"))
    return out[:, ::-1] if flip else out


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def compose_scene(
    rng: np.random.Generator,
    catalogue: Catalogue,
    backgrounds: BackgroundPool,
    *,
    size: int,
    min_objects: int,
    max_objects: int,
) -> Scene:
    """Draw one scene from ``rng`` (every random choice comes from it, so a seed fixes the scene)."""
    canvas = backgrounds.sample(rng, size).astype(np.int32)
    count = int(rng.integers(min_objects, max_objects + 1))
    masks, categories, paths = [], [], []
    for _ in range(count):
        category = int(rng.integers(len(catalogue)))
        choices = catalogue.cutouts[category]
        cutout = choices[int(rng.integers(len(choices)))]
        long_side = max(2, round(size * rng.uniform(*OBJECT_SCALE)))
        rgba = _scaled(cutout.rgba, long_side, flip=bool(rng.random() < 0.5))
        h, w = rgba.shape[:2]
        y0 = int(rng.integers(size - h + 1))
        x0 = int(rng.integers(size - w + 1))
        alpha = rgba[..., 3:4].astype(np.int32)
        region = canvas[y0: y0 + h, x0: x0 + w]
        region[...] = (rgba[..., :3] * alpha + region * (255 - alpha) + 127) // 255
        mask = np.zeros((size, size), dtype=bool)
        mask[y0: y0 + h, x0: x0 + w] = rgba[..., 3] >= ALPHA_THRESHOLD
        masks.append(mask)
        categories.append(category)
        paths.append(cutout.path)

    instances: list[Instance] = []
    covered = np.zeros((size, size), dtype=bool)
    for mask, category, path in reversed(list(zip(masks, categories, paths))):
        visible = mask & ~covered
        covered |= mask
        total = int(mask.sum())
        if total == 0 or not visible.any():
            continue
        instances.append(Instance(category, visible, _box(visible), float(visible.sum()) / total, path))
    instances.reverse()
    return Scene(canvas.astype(np.uint8), instances)
