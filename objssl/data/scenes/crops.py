"""Writer of the scene benchmark's object crops (``crops/{train,val}/<class>/``), for kNN and linear probes.

A crop is the scene's pixels inside an instance's box (the extent of its visible mask). Only
instances that are not difficult and whose box is at least :data:`MIN_CROP_SIDE` pixels on both
sides give a crop. Crops of ``trainval`` scenes go to ``train``, of ``test`` scenes to ``val``, so
no scene feeds both. A class that ends up with crops in only one of the two is removed from both
(an ImageFolder pair must have the same classes) and counted in :attr:`CropWriter.dropped`.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

from PIL import Image

from objssl.data.scenes.compositing import Scene

__all__ = ["CropWriter", "MIN_CROP_SIDE", "CROP_SPLITS"]

#: the shorter side of a box, in pixels, below which no crop is written
MIN_CROP_SIDE = 16
#: VOC split of the scene → ImageFolder split of its crops
CROP_SPLITS = {"trainval": "train", "test": "val"}


class CropWriter:
    """Saves crops as JPEG as scenes come; :meth:`finish` balances the class folders."""

    def __init__(self, root: str, categories: list[str], quality: int) -> None:
        self.root = root
        self.categories = categories
        self.quality = quality
        self.counts: Counter = Counter()  # (split, class) → crops
        self.dropped: list[str] = []

    def add(self, name: str, split: str, scene: Scene, first_annotation_id: int) -> None:
        image = Image.fromarray(scene.image)
        for k, inst in enumerate(scene.instances):
            x, y, w, h = inst.box
            if inst.difficult or min(w, h) < MIN_CROP_SIDE:
                continue
            cls = self.categories[inst.category]
            folder = os.path.join(self.root, CROP_SPLITS[split], cls)
            os.makedirs(folder, exist_ok=True)
            crop = image.crop((x, y, x + w, y + h))
            crop.save(os.path.join(folder, f"{name}_{first_annotation_id + k:07d}.jpg"),
                      quality=self.quality)
            self.counts[(CROP_SPLITS[split], cls)] += 1

    def finish(self) -> dict[str, dict[str, int]]:
        """Remove classes present in one split only; return crops per split and class."""
        splits = tuple(CROP_SPLITS.values())
        for cls in self.categories:
            present = [s for s in splits if self.counts[(s, cls)]]
            if present and len(present) < len(splits):
                for s in present:
                    shutil.rmtree(os.path.join(self.root, s, cls))
                    del self.counts[(s, cls)]
                self.dropped.append(cls)
        return {s: {c: self.counts[(s, c)] for c in self.categories if self.counts[(s, c)]}
                for s in splits}
