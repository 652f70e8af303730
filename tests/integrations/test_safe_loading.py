"""The weight readers of the detectron2/mmseg integrations unpickle data only and refuse damaged files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from objssl.checkpoint import CheckpointCorruptError, save_checkpoint
from objssl.errors import UserError
from objssl.integrations.dense_features import TimmDenseFeatures
from objssl.integrations.weights import read_backbone_weights

from .conftest import write_checkpoint

# the crafted-pickle and disk-damage helpers of the checkpoint tests (one source, loaded by path)
_spec = importlib.util.spec_from_file_location("_objssl_checkpoint_test_helpers",
                                               Path(__file__).resolve().parents[1] / "test_checkpoint.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_malicious, _damage = _helpers.write_malicious, _helpers._damage

HAS_D2 = importlib.util.find_spec("detectron2") is not None
HAS_MMSEG = importlib.util.find_spec("mmseg") is not None


@pytest.fixture
def evil(tmp_path):
    pwned = tmp_path / "pwned"
    yield write_malicious(tmp_path / "evil.pth", pwned)
    assert not pwned.exists(), "the crafted pickle ran"


def test_read_backbone_weights_refuses_a_crafted_pickle(evil):
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        read_backbone_weights(evil)


def test_dense_features_load_weights_refuses_a_crafted_pickle(evil):
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        TimmDenseFeatures("test_resnet").load_weights(evil)


def test_read_backbone_weights_refuses_a_damaged_checkpoint(tmp_path):
    import torch

    state = torch.load(write_checkpoint(tmp_path / "c.pth", "test_resnet"), weights_only=True)
    path = save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")},
                           str(tmp_path / "ck"), step=1, keep_last=1)
    assert read_backbone_weights(path)[0]  # intact: loads
    _damage(path)
    with pytest.raises(CheckpointCorruptError, match="step_00000001.pth"):
        read_backbone_weights(path)


@pytest.mark.skipif(not HAS_D2, reason="detectron2 is not installed: bash transfer/install.sh d2 (objssl[d2])")
def test_detectron2_backbone_and_parts_loader_refuse_a_crafted_pickle(evil):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from objssl.integrations.detectron2 import add_objssl_config, load_objssl_parts

    cfg = add_objssl_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_objssl_backbone"
    cfg.MODEL.OBJSSL.NAME = "test_resnet"
    cfg.MODEL.OBJSSL.CHECKPOINT = str(evil)
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        build_backbone(cfg)
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        load_objssl_parts(TimmDenseFeatures("test_resnet"), cfg)


@pytest.mark.skipif(not HAS_MMSEG, reason="mmseg is not installed: bash transfer/install.sh mmseg (objssl[mmseg])")
def test_mmseg_backbone_refuses_a_crafted_pickle(evil):
    from objssl.integrations.mmseg import ObjsslTimmBackbone

    backbone = ObjsslTimmBackbone("test_resnet", init_cfg=dict(type="Pretrained", checkpoint=str(evil)))
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        backbone.init_weights()
