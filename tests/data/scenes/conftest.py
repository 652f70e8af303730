"""Cut-outs drawn in the test: solid-colour RGBA shapes in category folders (no tuxpaint needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

#: category name → (folder below the objects root, colour, shape)
SHAPES = {
    "disc": ("disc", (230, 30, 30), "ellipse"),
    "shapes-square": ("shapes/square", (30, 30, 230), "rectangle"),
    "shapes-triangle": ("shapes/triangle", (30, 200, 30), "polygon"),
}


def draw_cutout(path, colour, shape, size=(40, 30), margin=5) -> None:
    """An RGBA file: ``shape`` in ``colour``, opaque, on a transparent margin."""
    w, h = size
    img = Image.new("RGBA", (w + 2 * margin, h + 2 * margin), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    box = (margin, margin, margin + w - 1, margin + h - 1)
    if shape == "ellipse":
        draw.ellipse(box, fill=(*colour, 255))
    elif shape == "rectangle":
        draw.rectangle(box, fill=(*colour, 255))
    else:
        draw.polygon([(margin, margin + h - 1), (margin + w // 2, margin), (margin + w - 1, margin + h - 1)],
                     fill=(*colour, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture(scope="session")
def cutout_root(tmp_path_factory):
    """disc/ (depth 1, with a nested subfolder), shapes/{square,triangle}/ (depth 2), an RGB file
    without alpha in disc/, and a loose image at the root (belongs to no category)."""
    root = tmp_path_factory.mktemp("cutouts")
    for folder, colour, shape in SHAPES.values():
        for k, size in enumerate([(40, 30), (24, 36)]):
            draw_cutout(root / folder / f"{shape}{k}.png", colour, shape, size)
    draw_cutout(root / "disc" / "nested" / "small.png", SHAPES["disc"][1], "ellipse", (16, 16))
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(root / "disc" / "opaque.png")
    draw_cutout(root / "loose.png", (0, 0, 0), "ellipse")
    return root
