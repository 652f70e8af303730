"""The cut-out catalogue: the folder rule, alpha checks with skip counts, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from objssl.data.scenes.catalogue import (
    ALPHA_THRESHOLD, discover_categories, load_catalogue, tuxpaint_categories,
)
from objssl.errors import DataError

from .conftest import SHAPES, draw_cutout


def test_depth_one_folders_with_images_and_depth_two_folders_of_groups_are_categories(cutout_root):
    cats = discover_categories(str(cutout_root))
    assert [c.name for c in cats] == sorted(SHAPES)
    disc = cats[0]
    assert len(disc.files) == 4  # two shapes, the nested one, the RGB file; not the loose root image
    assert any(f.endswith("nested/small.png") for f in disc.files)
    assert all("loose" not in f for c in cats for f in c.files)


def test_images_without_alpha_are_skipped_and_counted(cutout_root):
    cat = load_catalogue(discover_categories(str(cutout_root)), str(cutout_root), max_side=64)
    assert cat.skipped == {"no alpha channel": 1}
    assert [len(c) for c in cat.cutouts] == [3, 2, 2]


def test_cutouts_are_cropped_to_their_alpha_and_shrunk(tmp_path):
    draw_cutout(tmp_path / "a" / "big.png", (1, 2, 3), "rectangle", size=(120, 60), margin=20)
    cat = load_catalogue(discover_categories(str(tmp_path)), str(tmp_path), max_side=30)
    rgba = cat.cutouts[0][0].rgba
    assert rgba.shape == (15, 30, 4)
    assert (rgba[..., 3] >= ALPHA_THRESHOLD).all()  # no transparent margin left


def test_fully_opaque_alpha_is_skipped(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((8, 8, 4), 255, np.uint8), "RGBA").save(tmp_path / "a" / "x.png")
    with pytest.raises(DataError, match="alpha fully opaque: 1") as err:
        load_catalogue(discover_categories(str(tmp_path)), str(tmp_path), max_side=30)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("layout", ["empty", "only_loose_files", "missing"])
def test_a_folder_without_categories_is_a_one_line_error(tmp_path, layout):
    root = tmp_path / "objects"
    if layout != "missing":
        root.mkdir()
        (root / "empty_category").mkdir()
    if layout == "only_loose_files":
        draw_cutout(root / "x.png", (1, 1, 1), "ellipse")
    with pytest.raises(DataError) as err:
        discover_categories(str(root))
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_missing_default_cutouts_name_the_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install tuxpaint-stamps-default.*--objects"):
        tuxpaint_categories(str(tmp_path / "stamps"))


def test_grey_alpha_and_transparent_palette_images_are_cutouts(tmp_path):
    la = np.zeros((10, 10, 2), np.uint8)
    la[2:8, 2:8] = (200, 255)
    (tmp_path / "a").mkdir()
    Image.fromarray(la, "LA").save(tmp_path / "a" / "grey.png")
    pal = Image.fromarray(np.pad(np.ones((6, 6), np.uint8), 2), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "a" / "palette.png", transparency=0)
    cat = load_catalogue(discover_categories(str(tmp_path)), str(tmp_path), max_side=30)
    assert not cat.skipped and [c.rgba.shape for c in cat.cutouts[0]] == [(6, 6, 4), (6, 6, 4)]
    assert tuple(cat.cutouts[0][1].rgba[0, 0]) == (255, 0, 0, 255)
