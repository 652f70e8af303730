import pytest
import torch
from torch import nn

from objssl.heads import MLPHead, MLPHead2d
from objssl.registry import HEADS


def test_byol_defaults_4096_to_256():
    head = MLPHead(2048)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 4096), (4096, 256)]
    assert isinstance(head.layers[1], nn.BatchNorm1d) and isinstance(head.layers[2], nn.ReLU)
    assert head(torch.randn(4, 2048)).shape == (4, 256)


def test_options_layers_norm_bias():
    head = MLPHead(8, 16, 4, num_layers=3, norm="ln", act="gelu", bias_last=False)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and linears[-1].bias is None
    assert any(isinstance(m, nn.LayerNorm) for m in head.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    assert MLPHead(8, 16, 4, norm="none")(torch.randn(1, 8)).shape == (1, 4)  # BN-free works at batch 1


def test_2d_variant_is_per_pixel_mlp():
    torch.manual_seed(0)
    h2 = MLPHead2d(8, 16, 4, norm="none").eval()
    h1 = MLPHead(8, 16, 4, norm="none").eval()
    # same weights → same per-pixel outputs
    for c, l in zip([m for m in h2.modules() if isinstance(m, nn.Conv2d)], [m for m in h1.modules() if isinstance(m, nn.Linear)]):
        l.weight.data.copy_(c.weight.data[:, :, 0, 0])
        l.bias.data.copy_(c.bias.data)
    x = torch.randn(2, 8, 3, 5)
    y2 = h2(x)
    y1 = h1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert y2.shape == (2, 4, 3, 5)
    torch.testing.assert_close(y2, y1)


def test_registered_and_bad_args():
    assert HEADS.get("mlp") is MLPHead and HEADS.get("mlp2d") is MLPHead2d
    with pytest.raises(ValueError, match="norm="):
        MLPHead(4, norm="batch")
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(4, num_layers=0)
