"""The backbone contract, over every timm family objssl promises (small variants for speed)."""

import pytest
import timm
import torch

from objssl.backbones import BackboneOutput, TimmBackbone, create_backbone
from objssl.errors import UserError

# (timm name, family, expected map names)
FAMILIES = [
    ("test_resnet", "ResNet", ["c2", "c3", "c4", "c5"]),
    ("resnet10t", "ResNet-D", ["c2", "c3", "c4", "c5"]),
    ("test_convnext", "ConvNeXt", ["c2", "c3", "c4", "c5"]),
    ("regnetx_002", "RegNet", ["c2", "c3", "c4", "c5"]),
    ("test_efficientnet", "EfficientNet", ["c2", "c3", "c4", "c5"]),
    ("test_byobnet", "ByobNet", ["c2", "c3", "c4", "c5"]),
    ("test_vit", "ViT", ["c4"]),
    ("swin_tiny_patch4_window7_224", "Swin", ["c2", "c3", "c4", "c5"]),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[1] for f in FAMILIES])
def family(request):
    name, fam, names = request.param
    torch.manual_seed(0)
    return name, create_backbone(name).eval(), names


@pytest.mark.parametrize("size", [64, 96])
def test_maps_have_declared_names_strides_and_channels(family, size):
    name, bb, names = family
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = bb(x)
    assert isinstance(out, BackboneOutput)
    assert bb.out_features == names == list(out.maps)
    for info in bb.feature_info:
        m = out.maps[info.name]
        assert m.dim() == 4 and m.shape[0] == 2
        assert m.shape[1] == info.channels, (name, info)
        # stride: map side is input/stride (rounded up for odd sizes)
        assert abs(m.shape[-1] - size / info.stride) < 1, (name, info, m.shape)
        assert info.name == f"c{info.stride.bit_length() - 1}"
    assert out.pooled.shape == (2, bb.num_features)
    assert torch.isfinite(out.pooled).all()


def test_state_dict_is_plain_timm(family):
    name, bb, _ = family
    ref = timm.create_model(name, num_classes=0)
    assert set(bb.model.state_dict()) == set(ref.state_dict())


def test_gradients_reach_every_stage():
    bb = create_backbone("test_resnet")
    out = bb(torch.randn(2, 3, 64, 64))
    (sum(m.mean() for m in out.maps.values()) + out.pooled.mean()).backward()
    # (zero-initialised last BN of each block gives some convs exactly zero grads at init: not None)
    missing = [n for n, p in bb.model.named_parameters() if p.grad is None]
    assert missing == []


def test_vit_simple_pyramid_gives_four_strides():
    bb = create_backbone("test_vit", simple_pyramid=True, pyramid_channels=32)
    out = bb(torch.randn(1, 3, 64, 64))
    assert [(f.name, f.stride, f.channels) for f in bb.feature_info] == [
        ("c2", 4, 32), ("c3", 8, 32), ("c4", 16, 32), ("c5", 32, 32)
    ]
    assert [tuple(out.maps[k].shape[-2:]) for k in bb.out_features] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_vit_accepts_any_multiple_of_patch_size():
    bb = create_backbone("test_vit")
    for s in (48, 112, 160):
        assert bb(torch.randn(1, 3, s, s)).maps["c4"].shape[-1] == s // 16


def test_custom_out_indices():
    bb = create_backbone("test_resnet", out_indices=(3, 4))
    assert bb.out_features == ["c4", "c5"]
    vit = create_backbone("test_vit", out_indices=(1, 3, 5))
    assert vit.out_features == ["b1", "b3", "b5"]  # same stride: named by block


def test_weights_from_local_file(tmp_path):
    ref = timm.create_model("test_resnet", num_classes=0)
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-1, 1)
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    bb = create_backbone("test_resnet", pretrained_file=str(path))
    for k, v in ref.state_dict().items():
        assert torch.equal(bb.model.state_dict()[k], v), k


def test_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="unknown backbone 'resnet5O'.*resnet50"):
        create_backbone("resnet5O")
    with pytest.raises(UserError, match="does not exist"):
        create_backbone("test_resnet", pretrained_file=str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="simple_pyramid is for ViT"):
        create_backbone("test_resnet", simple_pyramid=True)


def test_registered_custom_backbone_is_used():
    from objssl.registry import BACKBONES

    BACKBONES.register("tiny_custom_for_test", lambda **kw: TimmBackbone("test_resnet", **kw), override=True)
    try:
        assert isinstance(create_backbone("tiny_custom_for_test"), TimmBackbone)
    finally:
        BACKBONES._objs.pop("tiny_custom_for_test")
