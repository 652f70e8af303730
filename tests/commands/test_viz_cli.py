"""``objssl viz proposals`` and ``objssl viz views`` write PNGs with what they claim to show."""

import numpy as np
from PIL import Image

from objssl.cli import main
from objssl.data import demo_images
from objssl.viz import box_colors


def _has_colour(pixels, colour):
    return bool((pixels.reshape(-1, 3) == np.array(colour, np.uint8)).all(axis=1).any())


def test_viz_proposals(tmp_path, capsys):
    image = demo_images()[2]
    out = tmp_path / "p.png"
    assert main(["viz", "proposals", image, "--source", "grid", "--param", "grids=[2]", "-o", str(out)]) == 0
    assert "4 of 4 boxes" in capsys.readouterr().out
    png = np.array(Image.open(out))
    w, h = Image.open(image).size
    assert png.shape == (h, w, 3)
    for colour in box_colors(4):
        assert _has_colour(png, colour)


def test_viz_views_one_panel_per_view_same_colours(tmp_path, capsys):
    out = tmp_path / "v.png"
    assert main(["viz", "views", demo_images()[2], "--method", "soco_star", "--source", "random", "-o", str(out)]) == 0
    assert "4 soco_star views" in capsys.readouterr().out
    png = np.array(Image.open(out))
    widths = [224, 224, 192, 112]
    assert png.shape == (224, sum(widths) + 8 * 3, 3)
    x = 0
    for w in widths:  # box 0's colour appears in every view's panel
        assert _has_colour(png[:, x: x + w], box_colors(4)[0])
        x += w + 8


def test_viz_errors(tmp_path, capsys):
    assert main(["viz", "views", demo_images()[0], "--method", "moco", "-o", str(tmp_path / "x.png")]) == 2
    assert "no view preset" in capsys.readouterr().err
    assert main(["viz", "proposals", str(tmp_path / "none.jpg"), "--source", "grid", "-o", str(tmp_path / "x.png")]) == 2
    assert "none.jpg" in capsys.readouterr().err
