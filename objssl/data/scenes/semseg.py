"""Writer of the scene benchmark's semantic segmentation (``semseg/``).

``semseg/<id>.png`` is a palette PNG of the scene's size whose pixel values are class indices:
``0`` background, ``c`` the category with COCO id ``c`` (the class of the visible instance there;
visible masks are disjoint, so this is the union of the masks per class with occlusion applied).
No pixel is marked ``255`` (ignore) by the generator. ``semseg/classes.txt`` lists the class
names by index, starting with ``background``; the splits are those of ``voc/ImageSets/Main``.
"""

from __future__ import annotations

import colorsys
import os

import numpy as np
from PIL import Image

from objssl.data.scenes.compositing import Scene
from objssl.fileio import atomic_write

__all__ = ["SemsegWriter", "class_map", "palette", "IGNORE_INDEX"]

#: the index reserved for pixels to ignore
IGNORE_INDEX = 255


def class_map(scene: Scene) -> np.ndarray:
    """uint8 ``[size, size]``: 0 background, ``category + 1`` where an instance is visible."""
    out = np.zeros(scene.image.shape[:2], dtype=np.uint8)
    for inst in scene.instances:
        out[inst.mask] = inst.category + 1
    return out


def palette(num_classes: int) -> list[int]:
    """A flat 256-entry RGB palette: black background, evenly spaced hues, white ignore."""
    colours = [(0, 0, 0)]
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb(i / max(1, num_classes), 0.8 if i % 2 else 1.0, 1.0 if i % 2 else 0.75)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    colours += [(0, 0, 0)] * (255 - len(colours)) + [(255, 255, 255)]
    return [v for rgb in colours for v in rgb]


class SemsegWriter:
    """Saves one class-index PNG per scene; :meth:`write` saves ``classes.txt``."""

    def __init__(self, root: str, categories: list[str]) -> None:
        self.root = root
        self.categories = categories
        self.palette = palette(len(categories))
        os.makedirs(root, exist_ok=True)

    def add(self, name: str, scene: Scene) -> None:
        img = Image.fromarray(class_map(scene), "P")
        img.putpalette(self.palette)
        img.save(os.path.join(self.root, f"{name}.png"), optimize=False)

    def write(self) -> None:
        text = "".join(f"{c}\n" for c in ["background", *self.categories])
        atomic_write(os.path.join(self.root, "classes.txt"), lambda f: f.write(text), mode="w")
