"""``objssl export --to mmseg``: exact mmseg names, every pretrained tensor arrives unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from objssl.errors import UserError
from objssl.export.common import load_checkpoint
from objssl.export.mmseg import export_mmseg, mmseg_resnet_spec, timm_resnet_to_mmseg
from objssl.registry import EXPORTERS

# checkpoint helpers shared with the integration tests (one source, loaded by path)
_spec = importlib.util.spec_from_file_location(
    "_objssl_transfer_test_helpers", Path(__file__).resolve().parents[1] / "integrations" / "conftest.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_checkpoint, backbone_tensors = _helpers.write_checkpoint, _helpers.backbone_tensors

HAS_MMSEG = all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmengine", "mmcv"))
needs_mmseg = pytest.mark.skipif(not HAS_MMSEG, reason="mmsegmentation is not installed: bash transfer/install.sh mmseg (objssl[mmseg])")


def _timm_keys(name: str) -> dict[str, torch.Tensor]:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, num_classes=0).state_dict()


def test_registered_as_an_exporter():
    assert EXPORTERS.get("mmseg") is export_mmseg


@pytest.mark.parametrize("name, spec", [
    ("resnet18", dict(type="ResNet", depth=18, stem_channels=64)),
    ("resnet50", dict(type="ResNet", depth=50, stem_channels=64)),
    ("resnet50c", dict(type="ResNetV1c", depth=50, stem_channels=64)),
    ("resnet18d", dict(type="ResNetV1d", depth=18, stem_channels=64)),
    ("resnet50s", dict(type="ResNetV1c", depth=50, stem_channels=128)),
    ("resnext50_32x4d", None), ("wide_resnet50_2", None), ("seresnet50", None), ("test_convnext", None),
])
def test_which_timm_models_mmsegs_resnets_can_hold(name, spec):
    assert mmseg_resnet_spec(_timm_keys(name)) == spec


def test_deep_stem_renamed_to_mmsegs():
    keys = timm_resnet_to_mmseg(dict(_timm_keys("resnet50c")))
    assert {"stem.0.weight", "stem.1.running_mean", "stem.3.weight", "stem.6.weight", "stem.7.weight"} <= set(keys)
    assert not any(k.startswith(("conv1", "bn1")) for k in keys)
    assert set(timm_resnet_to_mmseg(dict(_timm_keys("resnet18")))) == set(_timm_keys("resnet18"))


@pytest.mark.mmseg
@needs_mmseg
@pytest.mark.parametrize("name", ["resnet18", "resnet50c", "resnet18d"])
def test_resnet_export_fills_mmsegs_resnet_exactly(name, tmp_path):
    import objssl.integrations.mmseg  # noqa: F401 - mmcv._ext stand-in for mmseg.models
    from mmengine.runner import load_checkpoint as mm_load_checkpoint
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    ckpt_path = write_checkpoint(tmp_path / "ckpt.pth", name)
    out = str(tmp_path / "backbone.pth")
    report = export_mmseg(load_checkpoint(ckpt_path), out)
    assert any("checked against mmseg's" in n for n in report.notes) and report.skipped == []
    spec = mmseg_resnet_spec(backbone_tensors(ckpt_path, "teacher"))
    # stock config route: init_cfg=Pretrained on mmseg's own ResNet
    backbone = MODELS.build(dict(spec, norm_cfg=dict(type="BN", requires_grad=True),
                                 init_cfg=dict(type="Pretrained", checkpoint=out)))
    backbone.init_weights()
    state = backbone.state_dict()
    assert sorted(state) == report.written
    teacher = timm_resnet_to_mmseg(backbone_tensors(ckpt_path, "teacher"))
    assert all(torch.equal(state[k], v) for k, v in teacher.items())
    # exact names: mmengine's strict loader accepts the file as it is
    fresh = MODELS.build(dict(spec, norm_cfg=dict(type="BN", requires_grad=True)))
    mm_load_checkpoint(fresh, out, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in teacher.items())


@pytest.mark.mmseg
@needs_mmseg
def test_objssl_backbone_export_fills_objssl_backbone_exactly(tmp_path):
    import objssl.integrations.mmseg  # noqa: F401 - registers ObjsslTimmBackbone
    from mmengine.runner import load_checkpoint as mm_load_checkpoint
    from mmseg.registry import MODELS

    ckpt_path = write_checkpoint(tmp_path / "ckpt.pth", "test_convnext")
    out = str(tmp_path / "backbone.pth")
    report = export_mmseg(load_checkpoint(ckpt_path), out, which="student")
    assert report.skipped == ["head.norm.bias", "head.norm.weight"]
    assert any("not exported (student parts without an mmseg counterpart): predictor" in n for n in report.notes)
    student = backbone_tensors(ckpt_path, "student")
    for route in ("mmengine", "init_cfg"):
        cfg = dict(type="ObjsslTimmBackbone", model_name="test_convnext", out_indices=(0, 1, 2, 3))
        if route == "init_cfg":
            cfg["init_cfg"] = dict(type="Pretrained", checkpoint=out)
        backbone = MODELS.build(cfg)
        if route == "mmengine":
            mm_load_checkpoint(backbone, out, strict=True)
        else:
            backbone.init_weights()
        state = backbone.state_dict()
        assert sorted(state) == report.written
        assert all(torch.equal(v, student[k[len("model."):]]) for k, v in state.items())


def test_clear_errors(tmp_path):
    convnext = load_checkpoint(write_checkpoint(tmp_path / "c.pth", "test_convnext"))
    with pytest.raises(UserError, match="not a ResNet that mmseg's ResNet/ResNetV1c/ResNetV1d can hold"):
        export_mmseg(convnext, str(tmp_path / "x.pth"), arch="mmseg-resnet")
    with pytest.raises(UserError, match=r"must end in \.pth"):
        export_mmseg(convnext, str(tmp_path / "x.pkl"))
    with pytest.raises(UserError, match="arch='timm'"):
        export_mmseg(convnext, str(tmp_path / "x.pth"), arch="timm")
    with pytest.raises(UserError, match="no student backbone weights|no teacher backbone weights"):
        export_mmseg(dict(convnext, model={}), str(tmp_path / "x.pth"))
