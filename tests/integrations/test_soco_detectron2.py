"""A SoCo checkpoint initialises detectron2's Mask R-CNN FPN — backbone, FPN and box head — and trains."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from objssl.cli import main

from .test_detectron2 import dataset, make_cfg  # noqa: F401 - dataset is the shared registered-set fixture

HAS_D2 = importlib.util.find_spec("detectron2") is not None
pytestmark = [
    pytest.mark.d2,
    pytest.mark.skipif(not HAS_D2, reason="detectron2 is not installed: bash transfer/install.sh d2 (objssl[d2])"),
]

FPN, FC = 64, 128  # the tiny CPU config's FPN width and box-head FC size


@pytest.fixture(scope="module")
def soco_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("soco_run")
    assert main(["proposals", "--source", "random", "--out", str(out / "cache"), "--no-progress"]) == 0
    assert main(["pretrain", "--method", "soco", "--backbone", "resnet18", "--max-steps", "2", "--batch-size", "4",
                 "--workers", "0", "--out", str(out), f"data.proposals={out / 'cache'}", "method.image_size=64",
                 f"method.fpn_channels={FPN}", f"method.box_fc_dim={FC}", "method.proj_hidden_dim=64",
                 "method.proj_dim=32", "train.progress=false"]) == 0
    return str(out / "checkpoints" / "step_00000002.pth")


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_exported_soco_fills_backbone_fpn_and_box_head(which, soco_checkpoint, dataset, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import build_detection_train_loader
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    out = tmp_path / "soco_d2.pkl"
    assert main(["export", soco_checkpoint, "--to", "detectron2", "--which", which, "--opt", "arch=objssl",
                 "--opt", "norm=BN", "-o", str(out)]) == 0
    exported = pickle.load(open(out, "rb"))["model"]
    assert any(k.startswith("backbone.fpn_lateral") for k in exported)
    assert any(k.startswith("roi_heads.box_head.conv4") for k in exported)

    cfg = make_cfg()  # tiny Mask R-CNN FPN, objssl resnet18 backbone
    cfg.merge_from_list(["MODEL.FPN.NORM", "BN", "MODEL.ROI_BOX_HEAD.NORM", "BN", "MODEL.ROI_BOX_HEAD.NUM_CONV", 4,
                         "MODEL.ROI_BOX_HEAD.CONV_DIM", FPN, "MODEL.ROI_BOX_HEAD.FC_DIM", FC, "MODEL.ROI_BOX_HEAD.NUM_FC", 1])
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(out)))
    assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
    pretrained = ("backbone.bottom_up.", "backbone.fpn_", "roi_heads.box_head.")
    assert not [k for k in incompatible.missing_keys if k.startswith(pretrained)]
    state = model.state_dict()
    for k, v in exported.items():  # every pretrained tensor landed unchanged
        assert np.array_equal(state[k].numpy(), v), k
    ckpt = torch.load(soco_checkpoint, weights_only=True)["model"]
    branch = "target" if which == "teacher" else "online"
    assert torch.equal(state["backbone.fpn_lateral2.weight"], ckpt[f"{branch}.neck.fpn.inner_blocks.0.0.weight"])
    assert torch.equal(state["roi_heads.box_head.fc1.weight"], ckpt[f"{branch}.soco_boxes.box_head.fc.weight"])
    n_parts = sum(1 for k in ckpt if k.startswith(f"{branch}.neck.") or k.startswith(f"{branch}.soco_boxes.box_head."))
    assert sum(1 for k in exported if not k.startswith("backbone.bottom_up.")) == n_parts  # none dropped

    model.train()
    with EventStorage(0):
        losses = model(next(iter(build_detection_train_loader(cfg))))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.box_head.conv1.weight.grad is not None
