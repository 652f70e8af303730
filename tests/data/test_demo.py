"""The demo photos shipped in the package: present, decodable, small, and all attributed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import objssl.data.demo as demo
from objssl.data.demo import demo_image_dir, demo_images
from objssl.images.decode import load_rgb
from objssl.images.sources import list_images
from objssl.errors import DataError


def test_at_least_eight_sorted_absolute_jpegs():
    paths = demo_images()
    assert len(paths) >= 8
    assert paths == sorted(paths) and all(os.path.isabs(p) for p in paths)
    assert all(p.endswith(".jpg") for p in paths)
    assert list_images(demo_image_dir()) == paths  # the folder is a valid data source too


def test_every_demo_image_loads_as_rgb_photo():
    for path in demo_images():
        img = load_rgb(path, min_side=256)
        assert img.mode == "RGB" and max(img.size) <= 512
        assert np.asarray(img).std() > 10, f"{path} looks flat, not like a photo"


def test_folder_is_small():
    total = sum(p.stat().st_size for p in demo_image_dir().iterdir())
    assert total < 1_500_000


def test_every_image_has_a_notice_entry_with_licence():
    notice = (demo_image_dir() / "NOTICE.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in notice.splitlines()
            if line.startswith("| `")}
    names = [Path(p).name for p in demo_images()]
    assert sorted(rows) == sorted(names)
    for name in names:
        assert any(lic in rows[name] for lic in ("CC0", "public domain", "CC BY 2.0")), name


def test_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_DEMO_DIR", tmp_path / "gone")
    with pytest.raises(DataError, match="demo images are missing from this installation"):
        demo_images()
    (tmp_path / "gone").mkdir()
    with pytest.raises(DataError, match="holds no .jpg files"):
        demo_images()
