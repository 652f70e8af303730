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


def test_viz_views_draws_the_transform_the_method_trains_with(tmp_path, capsys):
    """BYOL trains with its MultiViewTransform (not a box-aware preset): the PNG is exactly its views."""
    import torch

    from objssl.images.decode import load_rgb
    from objssl.methods import method_transform
    from objssl.viz import draw_boxes, side_by_side

    image = demo_images()[1]
    out = tmp_path / "byol.png"
    assert main(["viz", "views", image, "--method", "byol", "--seed", "3", "-o", str(out)]) == 0
    assert "2 byol views" in capsys.readouterr().out
    torch.manual_seed(3)
    views = method_transform({"name": "byol"})(load_rgb(image))["views"]
    expected = side_by_side([draw_boxes(v, torch.zeros(0, 4), normalized=True) for v in views])
    assert np.array_equal(np.array(Image.open(out)), expected.permute(1, 2, 0).numpy())
