"""FPN neck over timm maps and its detectron2 key names."""

import pytest
import torch

from objssl import create_backbone
from objssl.necks import FPNNeck
from objssl.necks.fpn import fpn_to_detectron2
from objssl.registry import NECKS


@pytest.mark.parametrize("name", ["test_resnet", "test_convnext", "test_efficientnet"])
def test_pyramid_over_timm_maps(name):
    bb = create_backbone(name)
    neck = NECKS.build("fpn", bb.channels(), bb.strides(), 32)
    maps = bb(torch.randn(2, 3, 64, 64)).maps
    out = neck(maps)
    assert list(out) == ["p2", "p3", "p4", "p5"]
    for (n, m), (p, o) in zip(sorted(maps.items(), key=lambda kv: bb.strides()[kv[0]]), out.items()):
        assert o.shape == (2, 32, *m.shape[-2:]), (n, p)
    assert neck.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def test_top_down_path_reaches_the_finest_level():
    bb = create_backbone("test_resnet")
    neck = FPNNeck(bb.channels(), bb.strides(), 16, norm="none").eval()
    maps = {k: torch.zeros_like(v) for k, v in bb(torch.randn(1, 3, 64, 64)).maps.items()}
    base = neck(maps)["p2"]
    maps["c5"] = torch.randn_like(maps["c5"])
    assert not torch.allclose(neck(maps)["p2"], base)  # c5 changed p2 through the top-down sum


def test_detectron2_names_and_errors():
    bb = create_backbone("test_resnet")
    neck = FPNNeck(bb.channels(), bb.strides(), 16)
    d2 = fpn_to_detectron2(neck.state_dict(), neck.out_names)
    assert "backbone.fpn_lateral2.weight" in d2 and "backbone.fpn_output5.norm.running_var" in d2
    assert "backbone.fpn_lateral2.bias" not in d2  # a conv before a norm has no bias, as in detectron2
    assert len(d2) == len(neck.state_dict())
    with pytest.raises(ValueError, match="not among the backbone maps"):
        FPNNeck(bb.channels(), bb.strides(), in_features=["c6"])
