"""Background crops: square, seeded, and unreadable photos counted instead of fatal."""

from __future__ import annotations

import numpy as np
import pytest

from objssl.data import demo_images
from objssl.data.scenes.backgrounds import load_backgrounds
from objssl.errors import DataError


def test_unreadable_photos_are_counted_and_crops_are_seeded(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    pool = load_backgrounds([str(bad), *demo_images()[:2]])
    assert pool.skipped == {"unreadable background": 1} and len(pool.photos) == 2
    a = pool.sample(np.random.default_rng(5), 48)
    b = pool.sample(np.random.default_rng(5), 48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert a.std() > 5  # a crop of a photo, not a flat fill


def test_no_readable_photo_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="no readable background") as err:
        load_backgrounds([str(bad)])
    assert "\n" not in str(err.value)
