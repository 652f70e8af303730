"""Building a whole scene benchmark folder: ``objssl data scenes`` calls :func:`build_scenes`.

Layout of ``out/`` (docs/scenes.md has the details)::

    images/<id>.jpg                 every scene, unlabeled: the pretraining folder
    annotations.json                COCO instances: boxes, RLE masks, categories   (coco.py)
    voc/                            VOC-layout multi-label root for eval svm        (voc.py)
    crops/{train,val}/<class>/      ImageFolder of object crops for eval knn/linear (crops.py)
    semseg/<id>.png, classes.txt    class-index PNGs                                (semseg.py)
    scenes.json                     the arguments, catalogue, skip counts and totals

Determinism: scene ``i`` is drawn from ``numpy.random.default_rng([seed, 1, i])`` and the split
from ``default_rng([seed, 0])``; files are written in a fixed order with fixed encoder settings,
so the same arguments (and the same cut-outs and photos) give byte-identical files.
Atomicity: everything is written into a sibling folder ``out.partial-<pid>`` that is renamed to
``out`` at the end, so ``out`` is either absent or complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from objssl.data.demo import demo_images
from objssl.data.scenes.backgrounds import load_backgrounds
from objssl.data.scenes.catalogue import (
    TUXPAINT_DIR, discover_categories, load_catalogue, tuxpaint_categories,
)
from objssl.data.scenes.coco import CocoWriter
from objssl.data.scenes.compositing import compose_scene
from objssl.data.scenes.crops import CropWriter
from objssl.data.scenes.semseg import IGNORE_INDEX, SemsegWriter
from objssl.data.scenes.voc import SPLITS, VocWriter
from objssl.errors import DataError, UserError
from objssl.fileio import atomic_write
from objssl.images.sources import list_images

__all__ = ["build_scenes", "ScenesSummary", "TEST_FRACTION", "JPEG_QUALITY", "MANIFEST"]

log = logging.getLogger(__name__)

#: fraction of the scenes in the VOC ``test`` split (VOC 2007 is close to half and half)
TEST_FRACTION = 0.5
#: JPEG quality of scenes and crops
JPEG_QUALITY = 90
#: name of the summary file in the benchmark folder
MANIFEST = "scenes.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ScenesSummary:
    out: str
    scenes: int
    categories: list[str]
    instances: int
    crops: dict[str, int]
    skipped: dict[str, int]
    dropped_crop_classes: list[str]

    def __str__(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        crops = ", ".join(f"{k} {v}" for k, v in self.crops.items())
        return (f"{self.scenes} scenes, {len(self.categories)} categories, {self.instances} "
                f"instances, crops {crops}; skipped: {skipped}")


def _check_arguments(n: int, size: int, min_objects: int, max_objects: int) -> None:
    if n < 2:
        raise UserError(f"--n must be at least 2 (one scene per split), got {n}")
    if size < 32:
        raise UserError(f"--size must be at least 32 pixels, got {size}")
    if min_objects < 1 or max_objects < min_objects:
        raise UserError(
            f"need 1 <= --min-objects <= --max-objects, got {min_objects} and {max_objects}"
        )


def _claim(out: str) -> str:
    """Check ``out`` is free and return the staging folder to write into."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--out {out} already exists and is not empty; remove it or choose another")
    staging = f"{out.rstrip(os.sep)}.partial-{os.getpid()}"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    return staging


def _splits(n: int, seed: int) -> list[str]:
    test = np.random.default_rng([seed, 0]).permutation(n)[: max(1, round(n * TEST_FRACTION))]
    splits = ["trainval"] * n
    for i in test:
        splits[int(i)] = "test"
    return splits


def build_scenes(
    out: str,
    *,
    n: int = 2000,
    size: int = 256,
    objects: str | None = None,
    backgrounds: list[str] | None = None,
    seed: int = 0,
    min_objects: int = 2,
    max_objects: int = 6,
    progress: bool = True,
) -> ScenesSummary:
    """Compose ``n`` scenes into a new benchmark folder ``out`` (see the module docstring).

    Args:
        out: folder to create; it must not exist or be empty.
        objects: folder of cut-out categories (catalogue.py's rule); default: the tuxpaint stamps.
        backgrounds: extra folders (or list files) of photos, added to objssl's demo photos.

    Raises:
        UserError: bad arguments or ``out`` taken; DataError: no usable cut-outs or photos.
    """
    _check_arguments(n, size, min_objects, max_objects)
    out = os.path.abspath(out)
    source = os.path.abspath(objects) if objects else TUXPAINT_DIR
    categories = discover_categories(source) if objects else tuxpaint_categories()
    catalogue = load_catalogue(categories, source, max_side=size)
    if len(catalogue) > IGNORE_INDEX - 1:
        raise DataError(f"--objects {source}: {len(catalogue)} categories, at most "
                        f"{IGNORE_INDEX - 1} fit a semantic-segmentation PNG")
    photo_paths = list(demo_images())
    for folder in backgrounds or []:
        photo_paths += list_images(folder)
    pool = load_backgrounds(photo_paths)

    staging = _claim(out)
    try:
        summary = _write(staging, out, n, size, seed, min_objects, max_objects, catalogue, pool,
                         progress)
        if os.path.isdir(out):
            os.rmdir(out)  # empty: checked by _claim
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _write(staging, out, n, size, seed, min_objects, max_objects, catalogue, pool,
           progress) -> ScenesSummary:
    from tqdm import tqdm

    names = catalogue.names
    images_dir = os.path.join(staging, "images")
    os.makedirs(images_dir)
    coco = CocoWriter(names)
    voc = VocWriter(os.path.join(staging, "voc"), names)
    crops = CropWriter(os.path.join(staging, "crops"), names, JPEG_QUALITY)
    semseg = SemsegWriter(os.path.join(staging, "semseg"), names)
    splits = _splits(n, seed)
    for i in tqdm(range(n), desc="scenes", unit="scene", disable=not progress):
        scene = compose_scene(np.random.default_rng([seed, 1, i]), catalogue, pool, size=size,
                              min_objects=min_objects, max_objects=max_objects)
        name = f"{i:06d}"
        image_path = os.path.join(images_dir, f"{name}.jpg")
        Image.fromarray(scene.image).save(image_path, quality=JPEG_QUALITY)
        first_annotation = len(coco.annotations) + 1
        coco.add(i, f"{name}.jpg", splits[i], scene)
        voc.add(name, splits[i], scene, image_path)
        crops.add(name, splits[i], scene, first_annotation)
        semseg.add(name, scene)
    coco.write(os.path.join(staging, "annotations.json"))
    voc.write()
    semseg.write()
    crop_counts = crops.finish()
    skipped = {**catalogue.skipped, **pool.skipped}
    summary = ScenesSummary(
        out=out, scenes=n, categories=names, instances=len(coco.annotations),
        crops={s: sum(c.values()) for s, c in crop_counts.items()}, skipped=dict(skipped),
        dropped_crop_classes=crops.dropped,
    )
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "arguments": {"n": n, "size": size, "seed": seed, "min_objects": min_objects,
                      "max_objects": max_objects, "objects": catalogue.source,
                      "backgrounds": pool.paths},
        "categories": [{"name": c, "cutouts": len(k)} for c, k in zip(names, catalogue.cutouts)],
        "splits": {s: splits.count(s) for s in SPLITS},
        "instances": len(coco.annotations),
        "crops": crop_counts,
        "dropped_crop_classes": crops.dropped,
        "skipped": dict(sorted(skipped.items())),
    }
    text = json.dumps(manifest, indent=1)
    atomic_write(os.path.join(staging, MANIFEST), lambda f: f.write(text + "\n"), mode="w")
    return summary
