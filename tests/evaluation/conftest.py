"""Fixtures of the evaluation tests: tiny labelled image sets of real photo crops."""

import numpy as np
import pytest

from .labelled_images import make_image_folder, make_voc_root


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    return make_image_folder(base / "train", per_class=6), make_image_folder(base / "val", per_class=3, offset=40)


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory):
    return make_voc_root(tmp_path_factory.mktemp("voc") / "VOC")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
