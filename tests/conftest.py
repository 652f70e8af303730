"""Shared fixtures: real photos on disk and a tiny, fast training config."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """12 real photo crops (scikit-image's CC0 photos) as small JPEGs in a folder."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    for i in range(12):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        y, x = rng.integers(0, h // 3), rng.integers(0, w // 3)
        crop = img[y : y + 2 * h // 3, x : x + 2 * w // 3]
        Image.fromarray(crop).resize((96, 80)).save(folder / f"img_{i:02d}.jpg", quality=90)
    return folder


def _tiny_config(out, data, **train):
    from objssl.config import apply_overrides, load_config

    cfg = apply_overrides(load_config(), [
        "backbone.name=test_resnet", "method.proj_hidden_dim=32", "method.pred_hidden_dim=32",
        "method.proj_dim=16", "method.image_size=48", f"data.path={data}", "data.num_workers=0",
        f"train.out={out}", "train.batch_size=4", "train.max_steps=3", "train.progress=false",
        "optim.warmup_steps=1", "optim.lr=0.5",
    ])
    return apply_overrides(cfg, [f"train.{k}={v}" for k, v in train.items()])


@pytest.fixture
def tiny_config():
    """``tiny_config(out, data, **train_overrides)``: BYOL on a 0.3M-parameter timm model."""
    return _tiny_config
