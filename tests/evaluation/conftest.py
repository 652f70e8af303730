"""Tiny labelled image sets made of real photos: crops of the demo photos, labelled by source photo."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from PIL import Image

DEMO = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "objssl", "data", "demo", "*.jpg")))


def demo_crops(source: int, n: int, *, offset: int = 0, size: int = 48) -> list[Image.Image]:
    """``n`` different crops (positions follow a fixed pattern) of demo photo ``source``, resized to ``size``."""
    im = Image.open(DEMO[source]).convert("RGB")
    w, h = im.size
    cw, ch = w // 2, h // 2
    out = []
    for i in range(offset, offset + n):
        x = (i * 97) % (w - cw)
        y = (i * 61) % (h - ch)
        out.append(im.crop((x, y, x + cw, y + ch)).resize((size, size)))
    return out


def make_image_folder(root, classes: int = 3, per_class: int = 6, offset: int = 0) -> str:
    for c in range(classes):
        d = os.path.join(root, f"class{c}")
        os.makedirs(d, exist_ok=True)
        for i, im in enumerate(demo_crops(c, per_class, offset=offset)):
            im.save(os.path.join(d, f"{i}.jpg"))
    return str(root)


def make_voc_root(root, classes: int = 3, trainval: int = 8, test: int = 5, difficult_every: int = 5) -> str:
    """A VOC-layout root: each image is a crop of one demo photo (that class present, the others
    absent); every ``difficult_every``-th test image is marked difficult for its class."""
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(root, "ImageSets", "Main"), exist_ok=True)
    lines = {(c, s): [] for c in range(classes) for s in ("trainval", "test")}
    n = 0
    for split, count, offset in (("trainval", trainval, 0), ("test", test, 50)):
        for c in range(classes):
            for j, im in enumerate(demo_crops(c, count, offset=offset)):
                image_id = f"{n:06d}"
                n += 1
                im.save(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
                for other in range(classes):
                    if other == c:
                        value = 0 if split == "test" and j % difficult_every == difficult_every - 1 else 1
                    else:
                        value = -1
                    lines[(other, split)].append(f"{image_id} {value:2d}")
    for (c, split), rows in lines.items():
        with open(os.path.join(root, "ImageSets", "Main", f"class{c}_{split}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return str(root)


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    return make_image_folder(base / "train", per_class=6), make_image_folder(base / "val", per_class=3, offset=40)


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory):
    return make_voc_root(tmp_path_factory.mktemp("voc") / "VOC")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
