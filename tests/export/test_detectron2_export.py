"""``objssl export --to detectron2``: exact detectron2 names, every pretrained tensor arrives unchanged."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from objssl.errors import UserError
from objssl.export.common import load_checkpoint
from objssl.export.detectron2 import D2_PART_MAPPERS, _d2_resnet_key, export_detectron2, resnet_spec
from objssl.registry import EXPORTERS

# checkpoint helpers shared with the integration tests (one source, loaded by path)
_spec = importlib.util.spec_from_file_location(
    "_objssl_transfer_test_helpers", Path(__file__).resolve().parents[1] / "integrations" / "conftest.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_checkpoint, backbone_tensors = _helpers.write_checkpoint, _helpers.backbone_tensors

HAS_D2 = importlib.util.find_spec("detectron2") is not None
needs_d2 = pytest.mark.skipif(not HAS_D2, reason="detectron2 is not installed: bash transfer/install.sh d2 (objssl[d2])")


def _timm_keys(name: str) -> dict[str, torch.Tensor]:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, num_classes=0).state_dict()


def test_registered_as_an_exporter():
    assert EXPORTERS.get("detectron2") is export_detectron2


def test_resnet_key_names_follow_detectron2():
    assert _d2_resnet_key("conv1.weight") == "stem.conv1.weight"
    assert _d2_resnet_key("bn1.running_var") == "stem.conv1.norm.running_var"
    assert _d2_resnet_key("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert _d2_resnet_key("layer1.0.downsample.1.bias") == "res2.0.shortcut.norm.bias"
    assert _d2_resnet_key("layer3.5.bn2.weight") == "res4.5.conv2.norm.weight"
    assert _d2_resnet_key("layer4.2.conv3.weight") == "res5.2.conv3.weight"


@pytest.mark.parametrize("name, spec", [
    ("resnet18", dict(DEPTH=18, NUM_GROUPS=1, WIDTH_PER_GROUP=64, RES2_OUT_CHANNELS=64)),
    ("resnet50", dict(DEPTH=50, NUM_GROUPS=1, WIDTH_PER_GROUP=64, RES2_OUT_CHANNELS=256)),
    ("resnext50_32x4d", dict(DEPTH=50, NUM_GROUPS=32, WIDTH_PER_GROUP=4, RES2_OUT_CHANNELS=256)),
    ("wide_resnet50_2", dict(DEPTH=50, NUM_GROUPS=1, WIDTH_PER_GROUP=128, RES2_OUT_CHANNELS=256)),
    ("resnet50d", None), ("seresnet50", None), ("resnet50_gn", None), ("test_convnext", None),
])
def test_which_timm_models_detectron2s_resnet_can_hold(name, spec):
    got = resnet_spec(_timm_keys(name))
    if spec is None:
        assert got is None
    else:
        assert {k: got[k] for k in spec} == spec and got["STRIDE_IN_1X1"] is False


def _stock_mask_rcnn(spec: dict, layout: str, norm: str):
    """detectron2's own Mask R-CNN (model-zoo base config) with the ResNet the spec describes."""
    import detectron2
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    zoo = Path(detectron2.__file__).parent / "model_zoo" / "configs"
    cfg = get_cfg()
    cfg.merge_from_file(str(zoo / ("Base-RCNN-FPN.yaml" if layout == "fpn" else "Base-RCNN-C4.yaml")))
    cfg.MODEL.DEVICE, cfg.MODEL.MASK_ON, cfg.MODEL.BACKBONE.FREEZE_AT = "cpu", True, 0
    for k, v in spec.items():
        setattr(cfg.MODEL.RESNETS, k, v)
    cfg.MODEL.RESNETS.NORM = norm
    return build_model(cfg)


@pytest.mark.parametrize("name, layout, norm", [
    ("resnet18", "fpn", "SyncBN"), ("resnet18", "fpn", "FrozenBN"), ("resnet50", "c4", "FrozenBN")])
@pytest.mark.d2
@needs_d2
def test_resnet_export_fills_stock_mask_rcnn_exactly(name, layout, norm, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    ckpt_path = write_checkpoint(tmp_path / "ckpt.pth", name)
    out = str(tmp_path / "model.pkl")
    report = export_detectron2(load_checkpoint(ckpt_path), out, layout=layout, norm=norm)
    with open(out, "rb") as f:
        payload = pickle.load(f)
    assert payload["__author__"] == "objssl" and payload["matching_heuristics"] is False
    assert all(isinstance(v, np.ndarray) for v in payload["model"].values())
    assert sorted(payload["model"]) == report.written
    assert any("checked against detectron2's ResNet" in n for n in report.notes)

    teacher = backbone_tensors(ckpt_path, "teacher")
    model = _stock_mask_rcnn(resnet_spec(teacher), layout, norm)
    checkpointer = DetectionCheckpointer(model)
    # the checkpointer's own loading step, to see its missing/unexpected keys rather than its log
    incompatible = checkpointer._load_model(checkpointer._load_file(out))
    assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
    backbone_prefixes = ("backbone.bottom_up.",) if layout == "fpn" else ("backbone.", "roi_heads.res5.")
    assert not [k for k in incompatible.missing_keys if k.startswith(backbone_prefixes)]
    state = model.state_dict()
    for k, v in teacher.items():
        d2 = _d2_resnet_key(k)
        d2 = ("backbone.bottom_up." + d2) if layout == "fpn" else (
            ("roi_heads." if d2.startswith("res5.") else "backbone.") + d2)
        if norm == "FrozenBN" and k.endswith("num_batches_tracked"):
            assert k in report.skipped and d2 not in state  # FrozenBN keeps no counter
        else:
            assert torch.equal(state[d2], v), k
    assert len(report.written) + len(report.skipped) == len(teacher)


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
@pytest.mark.d2
@needs_d2
def test_objssl_backbone_export_fills_objssl_mask_rcnn(suffix, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from objssl.integrations.detectron2 import add_objssl_config

    ckpt_path = write_checkpoint(tmp_path / "ckpt.pth", "test_convnext")
    out = str(tmp_path / f"model{suffix}")
    report = export_detectron2(load_checkpoint(ckpt_path), out)
    assert report.skipped == ["head.norm.bias", "head.norm.weight"]  # no place in a detector: reported
    cfg = get_cfg()
    add_objssl_config(cfg)
    cfg.merge_from_file(str(Path(__file__).resolve().parents[2] / "transfer/detectron2/configs/mask_rcnn_objssl_tiny_cpu.yaml"))
    cfg.MODEL.OBJSSL.NAME = "test_convnext"
    model = build_model(cfg)  # random init; the file must fill the whole backbone
    DetectionCheckpointer(model).load(out)
    teacher = backbone_tensors(ckpt_path, "teacher")
    body = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")}
    assert sorted(body) == report.written
    for k, v in body.items():
        assert torch.equal(v, teacher[k[len("backbone.bottom_up.model."):]]), k


def test_student_and_parts(monkeypatch, tmp_path):
    lateral = torch.randn(256, 64, 1, 1)
    ckpt_path = write_checkpoint(tmp_path / "ckpt.pth", "resnet18", method="fake-soco",
                                 extra={"online.neck.lateral2.weight": lateral})
    ckpt = load_checkpoint(ckpt_path)
    out = str(tmp_path / "student.pkl")
    report = export_detectron2(ckpt, out, which="student")
    student = backbone_tensors(ckpt_path, "student")
    with open(out, "rb") as f:
        weights = pickle.load(f)["model"]
    assert np.array_equal(weights["backbone.bottom_up.stem.conv1.weight"], student["conv1.weight"].numpy())
    assert any("not exported (student parts without a detectron2 counterpart): neck, predictor" in n for n in report.notes)

    def mapper(ck, which):
        return {"backbone.fpn_lateral2.weight": ck["model"]["online.neck.lateral2.weight"]}

    monkeypatch.setitem(D2_PART_MAPPERS, "fake-soco", mapper)
    report = export_detectron2(ckpt, out, which="student")
    assert "backbone.fpn_lateral2.weight" in report.written
    with open(out, "rb") as f:
        assert np.array_equal(pickle.load(f)["model"]["backbone.fpn_lateral2.weight"], lateral.numpy())


def test_clear_errors(tmp_path):
    convnext = load_checkpoint(write_checkpoint(tmp_path / "c.pth", "test_convnext"))
    r18 = load_checkpoint(write_checkpoint(tmp_path / "r.pth", "resnet18"))
    with pytest.raises(UserError, match="not a torchvision-style ResNet"):
        export_detectron2(convnext, str(tmp_path / "x.pkl"), arch="d2-resnet")
    with pytest.raises(UserError, match="layout 'c4' needs a ResNet-style model"):
        export_detectron2(convnext, str(tmp_path / "x.pkl"), layout="c4")
    with pytest.raises(UserError, match="ResNet-18 cannot fill it"):
        export_detectron2(r18, str(tmp_path / "x.pkl"), layout="c4")
    with pytest.raises(UserError, match=r"must end in \.pkl or \.pth"):
        export_detectron2(r18, str(tmp_path / "x.yaml"))
    with pytest.raises(UserError, match="norm='GN'"):
        export_detectron2(r18, str(tmp_path / "x.pkl"), norm="GN")
    broken = dict(convnext, model={k: v for k, v in convnext["model"].items() if "stages.1.blocks" not in k})
    with pytest.raises(UserError, match="lacks .* tensors of backbone 'test_convnext'"):
        export_detectron2(broken, str(tmp_path / "x.pkl"))
    assert not os.path.exists(tmp_path / "x.pkl")
