"""Real photos (objssl's demo images) as uint8 tensors and as small float batches."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data.demo import demo_images
from objssl.images.decode import load_rgb


@pytest.fixture(scope="session")
def photos() -> list[torch.Tensor]:
    """The demo photos, ``uint8 [3, H, W]`` at full size (long side 512, sizes differ)."""
    return [TF.pil_to_tensor(load_rgb(p)) for p in demo_images()]


@pytest.fixture(scope="session")
def small_batch(photos) -> torch.Tensor:
    """``float [4, 3, 48, 64]`` in [0, 1]: four photos resized (colour and blur tests)."""
    return torch.stack([TF.resize(p, [48, 64], antialias=True) for p in photos[:4]]).float() / 255
