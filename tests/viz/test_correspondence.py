"""``objssl viz correspondence``: the image, its neighbours and its pairs as matching colours."""

import numpy as np
import pytest
from PIL import Image

from objssl.cli import main
from objssl.correspondence import format as fmt
from objssl.viz import box_colors


def grey_images(tmp_path, n=3, size=(200, 150)):
    paths = []
    for i in range(n):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((size[1], size[0], 3), 100 + 20 * i, np.uint8)).save(paths[-1])
    return paths


def write_stage2(folder, paths):
    boxes = [np.array([[10, 10, 90, 90], [100, 20, 190, 140], [30, 60, 120, 140]], np.float32)] * len(paths)
    fmt.write_knn(folder, paths, np.array([[1, 2], [2, 0], [0, 1]]), np.ones((3, 2)))
    fmt.write_box_shard(folder, 0, 0, boxes, None)
    pairs = [[(np.array([[0, 1], [2, 2]]), np.array([0.9, 0.8])), (np.array([[1, 0]]), np.array([0.7]))]] * 3
    fmt.write_pair_shard(folder, 0, 0, 2, pairs)
    fmt.write_meta(folder, k=2, num_images=3, shards=[(0, 3)])


def has(pixels, colour):
    return bool((pixels.reshape(-1, 3) == np.array(colour, np.uint8)).all(axis=1).any())


def test_pairs_are_drawn_in_matching_colours(tmp_path, capsys):
    paths = grey_images(tmp_path)
    folder = str(tmp_path / "stage2")
    write_stage2(folder, paths)
    out = tmp_path / "pairs.png"
    assert main(["viz", "correspondence", folder, paths[0], "-o", str(out)]) == 0
    assert "3 RoI pairs" in capsys.readouterr().out
    png = np.array(Image.open(out).convert("RGB"))
    # two rows (k = 2) of two 256-px-high panels; the images are 200x150, so scaled by 256/150
    assert png.shape[0] == 2 * 256 + 8
    f = 256 / 150
    c0, c1 = box_colors(2)
    top, bottom = png[:256], png[264:]
    w0 = round(200 * f)
    # row 1, pair 0: query box 0 on the left and neighbour box 1 on the right, both in colour 0
    assert tuple(top[round(10 * f), round(50 * f)]) == c0
    assert tuple(top[round(80 * f), w0 + 16 + round(100 * f)]) == c0
    assert tuple(top[round(140 * f) - 1, round(75 * f)]) == c1  # query box 2, bottom edge
    # row 2 has one pair: colour 0 only
    assert has(bottom, c0) and not has(bottom, c1)
    # the grey of image 0 and of its neighbours 1 and 2 is there, undrawn
    assert tuple(top[5, 5]) == (100, 100, 100) and tuple(top[5, w0 + 16 + 5]) == (120, 120, 120)
    assert tuple(bottom[5, w0 + 16 + 5]) == (140, 140, 140)
    # by index, and fewer pairs
    assert main(["viz", "correspondence", folder, "1", "--pairs", "1", "--neighbours", "1", "-o", str(out)]) == 0
    assert "1 RoI pairs" in capsys.readouterr().out
    png = np.array(Image.open(out).convert("RGB"))
    assert png.shape[0] == 256 and has(png, c0) and not has(png, c1)


def test_unknown_image_is_one_line(tmp_path, capsys):
    paths = grey_images(tmp_path)
    folder = str(tmp_path / "stage2")
    write_stage2(folder, paths)
    assert main(["viz", "correspondence", folder, str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.png")]) == 2
    assert "is not among the 3 images" in capsys.readouterr().err
