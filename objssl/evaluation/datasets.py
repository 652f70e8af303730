"""Labelled image sets for the evaluation protocols: an ImageFolder tree, a VOC-layout root, a COCO json.

Two kinds of labels:

* **single-label** (:attr:`LabelledImages.labels`, ``int64 [N]``): an ImageFolder tree
  ``ROOT/<class>/<image>``; classes are the sorted folder names (as torchvision's ImageFolder).
* **multi-label** (:attr:`LabelledImages.targets`, ``int8 [N, C]``) in the coding of the VOC07 SVM
  benchmark's label files: ``1`` present, ``0`` absent, ``-1`` ignore (VOC's *difficult*, written
  ``0`` in VOC's own ``{class}_{split}.txt``; VOC's ``-1`` "absent" becomes ``0``). A VOC-layout
  root (``JPEGImages/``, ``ImageSets/Main/{class}_{trainval,test}.txt``) and a COCO json (image →
  set of categories, no ignore label) both read into it.

Problems with the source itself (an empty class folder, a missing split file, a malformed line) are
one-line :class:`~objssl.errors.DataError` s naming the file; whether each image decodes is checked
when features are extracted (a file that does not is a counted skip there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from objssl.errors import DataError
from objssl.images import IMAGE_EXTENSIONS

__all__ = ["LabelledImages", "read_image_folder", "read_voc", "read_coco_labels", "is_voc_root"]


@dataclass
class LabelledImages:
    """Image paths with their labels (exactly one of ``labels`` / ``targets`` is set)."""

    paths: list[str]
    classes: list[str]
    source: str  # what was read, for messages and the result file
    labels: np.ndarray | None = None  # int64 [N]: class index per image
    targets: np.ndarray | None = None  # int8 [N, C]: 1 present, 0 absent, -1 ignore
    kind: str = field(default="folder")  # folder | voc | coco

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> LabelledImages:
        """The images at the indices ``keep`` (e.g. those whose file decoded)."""
        keep = np.asarray(keep, dtype=np.int64)
        return LabelledImages(
            [self.paths[i] for i in keep], list(self.classes), self.source,
            None if self.labels is None else self.labels[keep],
            None if self.targets is None else self.targets[keep], self.kind,
        )

    def describe(self) -> dict:
        out = {"source": self.source, "kind": self.kind, "images": len(self.paths), "classes": len(self.classes)}
        return out


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def read_image_folder(root: str) -> LabelledImages:
    """``root/<class>/**/<image>``: one class per sub-folder (sorted names), images found recursively."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder (an ImageFolder tree ROOT/<class>/<image> is expected)")
    classes = sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"{root}: no class folders (an ImageFolder tree ROOT/<class>/<image> is expected)")
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
        if not found:
            raise DataError(f"{folder}: empty class folder (no image files with {', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(os.path.abspath(p) for p in found)
        labels.extend([index] * len(found))
    return LabelledImages(paths, classes, os.path.abspath(root), labels=np.asarray(labels, dtype=np.int64))


def is_voc_root(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "ImageSets", "Main")) and os.path.isdir(os.path.join(path, "JPEGImages"))


def _voc_classes(main: str, split: str) -> list[str]:
    suffix = f"_{split}.txt"
    names = sorted(f[: -len(suffix)] for f in os.listdir(main) if f.endswith(suffix) and "_" not in f[: -len(suffix)])
    return names


def read_voc(root: str, split: str, classes: list[str] | None = None) -> LabelledImages:
    """``root/ImageSets/Main/{class}_{split}.txt`` (lines ``<image id> <1|-1|0>``) → multi-label targets.

    ``classes`` (default: every class with a ``_trainval`` file) must each have a file for ``split``;
    a missing one is a DataError naming it. Images are ``root/JPEGImages/<id>.jpg``, sorted by id.
    """
    root = os.path.abspath(os.fspath(root))
    main = os.path.join(root, "ImageSets", "Main")
    if not is_voc_root(root):
        raise DataError(f"{root}: not a VOC-layout root (it needs JPEGImages/ and ImageSets/Main/)")
    if classes is None:
        classes = _voc_classes(main, "trainval")
        if not classes:
            raise DataError(f"{main}: no {{class}}_trainval.txt files")
    coding = {1: 1, -1: 0, 0: -1}  # VOC's present / absent / difficult → 1 / 0 / ignore
    rows: dict[str, np.ndarray] = {}
    for c, name in enumerate(classes):
        path = os.path.join(main, f"{name}_{split}.txt")
        if not os.path.isfile(path):
            raise DataError(f"{path}: missing split file (class {name!r} has no {split} labels)")
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    image_id, value = parts[0], coding[int(parts[1])]
                except (IndexError, ValueError, KeyError):
                    raise DataError(f"{path}:{n}: expected '<image id> <1|-1|0>', got {line.strip()!r}") from None
                if image_id not in rows:
                    rows[image_id] = np.full(len(classes), -2, dtype=np.int8)
                rows[image_id][c] = value
    if not rows:
        raise DataError(f"{main}: the {split} split files list no images")
    ids = sorted(rows)
    targets = np.stack([rows[i] for i in ids])
    missing = np.argwhere(targets == -2)
    if len(missing):
        i, c = missing[0]
        raise DataError(f"{os.path.join(main, f'{classes[c]}_{split}.txt')}: image {ids[i]!r} is not listed "
                        f"(it is in another class's {split} file)")
    paths = [os.path.join(root, "JPEGImages", f"{i}.jpg") for i in ids]
    return LabelledImages(paths, list(classes), f"{root} ({split})", targets=targets, kind="voc")


def read_coco_labels(path: str, image_root: str | None = None, classes: list[str] | None = None) -> LabelledImages:
    """A COCO instances json → multi-label targets (an image has a category if any instance of it is there).

    Every image in ``images`` counts (one without annotations has no category). ``image_root``
    defaults to the json's folder. ``classes`` (the category names, in order) default to the json's
    categories sorted by id.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        images, annotations, categories = data["images"], data.get("annotations", []), data["categories"]
        by_id = {int(c["id"]): str(c["name"]) for c in categories}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO instances json ({type(exc).__name__}: {exc})") from None
    names = classes if classes is not None else [by_id[i] for i in sorted(by_id)]
    column = {name: c for c, name in enumerate(names)}
    unknown = sorted(set(by_id.values()) - set(column))
    if unknown:
        raise DataError(f"{path}: categories {unknown[:3]} are not among the training classes")
    if not images:
        raise DataError(f"{path}: the json lists no images")
    root = image_root or os.path.dirname(path)
    row_of = {int(im["id"]): r for r, im in enumerate(images)}
    targets = np.zeros((len(images), len(names)), dtype=np.int8)
    for ann in annotations:
        try:
            targets[row_of[int(ann["image_id"])], column[by_id[int(ann["category_id"])]]] = 1
        except KeyError:
            raise DataError(f"{path}: annotation {ann.get('id')} names an unknown image or category") from None
    paths = [os.path.join(root, im["file_name"]) for im in images]
    return LabelledImages(paths, list(names), path, targets=targets, kind="coco")
