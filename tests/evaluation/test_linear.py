import numpy as np
import pytest

from objssl.errors import DataError
from objssl.evaluation.linear import linear_probe


def _blobs(rng, n_per, classes=3, dim=10, spread=1.0):
    centres = rng.normal(size=(classes, dim)) * 3
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    return x, np.repeat(np.arange(classes), n_per)


def test_probe_separates_and_chooses_c_without_val(rng):
    x, y = _blobs(rng, 20)
    xv, yv = _blobs(np.random.default_rng(0), 5)  # the same centres: the same rng seed as the fixture
    got = linear_probe(x, y, xv, yv)
    assert got["metrics"]["top1"] == 100.0 and got["metrics"]["top5"] == 100.0
    assert set(got["heldout_top1"]) == {"0.01", "0.1", "1.0", "10.0", "100.0"}
    # C comes from the train split alone: scrambling the val labels changes the score, not C
    scrambled = linear_probe(x, y, xv, (yv + 1) % 3)
    assert scrambled["C"] == got["C"] and scrambled["metrics"]["top1"] == 0.0


def test_probe_needs_two_images_per_class(rng):
    x, y = _blobs(rng, 3)
    y[0] = 7  # a class with one image
    with pytest.raises(DataError, match="at least 2 train images per class"):
        linear_probe(x, y, x, y)
