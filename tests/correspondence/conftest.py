import pytest
import torch


@pytest.fixture(scope="module")
def tiny_backbone():
    """A seeded 0.3M-parameter timm ResNet (eval mode): real features of real photos, fast on a CPU."""
    from objssl.backbones import create_backbone

    torch.manual_seed(0)
    return create_backbone("test_resnet").eval()


@pytest.fixture(scope="module")
def demo_paths():
    from objssl.data import demo_images

    return demo_images()
