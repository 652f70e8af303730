"""Writer of the scene benchmark's VOC-layout multi-label root (``voc/``), read by ``objssl eval svm``.

``voc/JPEGImages/<id>.jpg`` are the scenes (hard links to ``images/`` where the file system allows,
copies otherwise); ``voc/ImageSets/Main/{trainval,test}.txt`` list the ids of each split and
``voc/ImageSets/Main/<class>_{trainval,test}.txt`` hold one ``<id> <label>`` line per image of the
split, as PASCAL VOC 2007 does: ``1`` the class has a visible instance that is not difficult, ``0``
its only instances are difficult (mostly occluded), ``-1`` it is absent.
"""

from __future__ import annotations

import os
import shutil

from objssl.data.scenes.compositing import Scene
from objssl.fileio import atomic_write

__all__ = ["VocWriter", "SPLITS", "image_labels"]

#: the VOC split names, in the order they are written
SPLITS = ("trainval", "test")


def image_labels(scene: Scene, num_classes: int) -> list[int]:
    """VOC label (1 / 0 / -1) of each class for one scene."""
    labels = [-1] * num_classes
    for inst in scene.instances:
        labels[inst.category] = max(labels[inst.category], 0 if inst.difficult else 1)
    return labels


class VocWriter:
    """Links each scene into ``JPEGImages``; :meth:`write` saves the split and class files."""

    def __init__(self, root: str, categories: list[str]) -> None:
        self.root = root
        self.categories = categories
        self.rows: dict[str, list[tuple[str, list[int]]]] = {s: [] for s in SPLITS}
        os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)

    def add(self, name: str, split: str, scene: Scene, image_path: str) -> None:
        target = os.path.join(self.root, "JPEGImages", os.path.basename(image_path))
        try:
            os.link(image_path, target)
        except OSError:  # no hard links here (another file system, FAT, ...)
            shutil.copyfile(image_path, target)
        self.rows[split].append((name, image_labels(scene, len(self.categories))))

    def write(self) -> None:
        main = os.path.join(self.root, "ImageSets", "Main")
        for split, rows in self.rows.items():
            ids = "".join(f"{name}\n" for name, _ in rows)
            atomic_write(os.path.join(main, f"{split}.txt"), lambda f, t=ids: f.write(t), mode="w")
            for c, cls in enumerate(self.categories):
                text = "".join(f"{name} {labels[c]:2d}\n" for name, labels in rows)
                path = os.path.join(main, f"{cls}_{split}.txt")
                atomic_write(path, lambda f, t=text: f.write(t), mode="w")
