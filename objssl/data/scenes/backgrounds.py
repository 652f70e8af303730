"""Scene backgrounds: random crops of real photos, resized to the square scene size.

The pool is objssl's demo photos plus every image of the ``--backgrounds`` folders; a file that
does not decode is skipped and counted, not fatal.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from objssl.errors import DataError
from objssl.images.decode import BadImageError, load_rgb

__all__ = ["BackgroundPool", "load_backgrounds", "CROP_AREA", "CROP_ASPECT"]

#: fraction of the photo's area a background crop covers, drawn uniformly
CROP_AREA = (0.25, 1.0)
#: width / height of a background crop, drawn log-uniformly
CROP_ASPECT = (3 / 4, 4 / 3)


@dataclass
class BackgroundPool:
    """Decoded background photos (RGB) and the paths they came from."""

    paths: list[str]
    photos: list[Image.Image]
    skipped: Counter = field(default_factory=Counter)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random crop of a random photo, resized to ``size × size``, flipped with p = 0.5."""
        photo = self.photos[int(rng.integers(len(self.photos)))]
        w, h = photo.size
        area = w * h * rng.uniform(*CROP_AREA)
        aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        x0 = int(rng.integers(w - cw + 1))
        y0 = int(rng.integers(h - ch + 1))
        crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        pixels = np.asarray(crop)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return np.ascontiguousarray(pixels)


def load_backgrounds(paths: list[str]) -> BackgroundPool:
    """Decode ``paths``; unreadable files are counted in :attr:`BackgroundPool.skipped`.

    Raises:
        DataError: none of them decodes.
    """
    kept, photos, skipped = [], [], Counter()
    for path in paths:
        try:
            photos.append(load_rgb(path, min_side=16))
        except BadImageError:
            skipped["unreadable background"] += 1
            continue
        kept.append(path)
    if not photos:
        raise DataError(f"no readable background photo among {len(paths)} files")
    return BackgroundPool(kept, photos, skipped)
