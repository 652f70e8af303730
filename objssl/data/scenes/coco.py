"""Writer of the scene benchmark's COCO instance annotations (``annotations.json``).

One image entry per scene (``file_name`` relative to the benchmark's ``images/`` folder, plus its
``split``); one annotation per visible instance: ``bbox`` ``[x, y, w, h]`` and ``area`` of the
visible mask, ``segmentation`` the visible mask as compressed RLE (pycocotools), ``iscrowd`` 0, and
two extra keys, ``visibility`` (visible / whole-mask pixels) and ``difficult`` (mostly occluded).
Category ids are 1..C in catalogue order, so they double as the semantic-segmentation indices.
"""

from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as mask_utils

from objssl.data.scenes.compositing import Scene
from objssl.fileio import atomic_write

__all__ = ["CocoWriter"]


class CocoWriter:
    """Collects images and instances scene by scene; :meth:`write` saves the json."""

    def __init__(self, categories: list[str]) -> None:
        self.categories = [
            {"id": i + 1, "name": name, "supercategory": name.split("-")[0]}
            for i, name in enumerate(categories)
        ]
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, image_id: int, file_name: str, split: str, scene: Scene) -> None:
        h, w = scene.image.shape[:2]
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": w, "height": h, "split": split}
        )
        for inst in scene.instances:
            rle = mask_utils.encode(np.asfortranarray(inst.mask.astype(np.uint8)))
            self.annotations.append({
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": inst.category + 1,
                "bbox": list(inst.box),
                "area": inst.area,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "iscrowd": 0,
                "visibility": round(inst.visibility, 4),
                "difficult": int(inst.difficult),
            })

    def write(self, path: str) -> None:
        doc = {
            "info": {"description": "objssl scene benchmark (objssl data scenes)"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }
        text = json.dumps(doc, separators=(",", ":"))
        atomic_write(path, lambda f: f.write(text), mode="w")
