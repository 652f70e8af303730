"""Every shipped config loads, validates, and builds its method with the settings it claims."""

from pathlib import Path

import pytest

from objssl import create_backbone, create_method
from objssl.config import load_config

import yaml

ALL_YAML = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
#: pipeline configs (``objssl orl``) hold a training config per stage instead of one
PIPELINES = [p for p in ALL_YAML if "stage1" in (yaml.safe_load(p.read_text()) or {})]
CONFIGS = [p for p in ALL_YAML if p not in PIPELINES]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_builds_its_method(path):
    cfg = load_config(str(path))
    kwargs = {k: v for k, v in cfg["method"].items() if k not in ("name", "proposals")}
    # the method on a tiny stand-in of the same family: the config's keys are all accepted
    family = "test_vit" if "vit" in cfg["backbone"]["name"] else "test_resnet"
    kwargs.update({k: 16 for k in ("proj_hidden_dim", "pred_hidden_dim", "fpn_channels", "box_fc_dim") if k in kwargs})
    method = create_method(cfg["method"]["name"], create_backbone(family), **kwargs)
    assert method.name == cfg["method"]["name"]


@pytest.mark.parametrize("name, lr, wd, batch, epochs, warmup", [
    ("slotcon_coco_r50.yaml", 1.0, 1e-5, 512, 800, 5),
    ("soco_fpn_in1k.yaml", 1.0, 1e-5, 2048, 100, 10),
    ("soco_fpn_in1k_400ep.yaml", 1.0, 1e-5, 2048, 400, 10),
    ("soco_star_in1k_400ep.yaml", 1.0, 1e-5, 2048, 400, 10),
    ("soco_c4_in1k.yaml", 1.0, 1e-5, 2048, 100, 10),
])
def test_paper_settings(name, lr, wd, batch, epochs, warmup):
    cfg = load_config(str(CONFIGS[0].parent / name))
    o, t = cfg["optim"], cfg["train"]
    assert (o["name"], o["lr"], o["weight_decay"], o["exclude_1d"]) == ("lars", lr, wd, True)
    assert (t["batch_size"], t["epochs"], o["warmup_epochs"], o["min_lr"]) == (batch, epochs, warmup, 1e-6)
    assert o["kwargs"]["trust_coeff"] == 0.001


IN1K_TRAIN, COCO_TRAIN = 1_281_167, 118_287


@pytest.mark.parametrize("coco, in1k", [
    ("soco_fpn_coco.yaml", "soco_fpn_in1k.yaml"),
    ("soco_star.yaml", "soco_star_in1k_400ep.yaml"),
    ("soco_c4.yaml", "soco_c4_in1k.yaml"),
])
def test_soco_coco_configs_run_the_papers_iterations(coco, in1k):
    """A COCO config trains as many iterations as its ImageNet twin (the paper's run), within one COCO
    epoch, warms up for the same iterations, says so in its header, and has the same recipe otherwise."""
    from objssl.data.sampler import ResumableBatchSampler

    a, b = (load_config(str(CONFIGS[0].parent / n)) for n in (coco, in1k))
    per_epoch = {n: ResumableBatchSampler(n, 2048).steps_per_epoch for n in (COCO_TRAIN, IN1K_TRAIN)}
    paper = b["train"]["epochs"] * per_epoch[IN1K_TRAIN]
    steps = a["train"]["epochs"] * per_epoch[COCO_TRAIN]
    assert paper <= steps < paper + per_epoch[COCO_TRAIN]
    assert a["optim"]["warmup_steps"] == b["optim"]["warmup_epochs"] * per_epoch[IN1K_TRAIN]
    header = (CONFIGS[0].parent / coco).read_text().split("method:")[0].replace(",", "")
    assert str(paper) in header and str(steps) in header
    assert a["method"] == b["method"] and a["train"]["batch_size"] == b["train"]["batch_size"] == 2048
    assert {k: v for k, v in a["optim"].items() if not k.startswith("warmup")} == \
        {k: v for k, v in b["optim"].items() if not k.startswith("warmup")}


@pytest.mark.parametrize("name, cutout", [
    ("soco_fpn_in1k.yaml", 0.5), ("soco_fpn_coco.yaml", 0.5), ("soco_c4_in1k.yaml", 0.5), ("soco_c4.yaml", 0.5),
    ("soco_fpn_in1k_400ep.yaml", 0.0), ("soco_star_in1k_400ep.yaml", 0.0), ("soco_star.yaml", 0.0),
])
def test_soco_configs_follow_the_official_cutout_and_box_sets(name, cutout):
    m = load_config(str(CONFIGS[0].parent / name))["method"]
    assert m["cutout_p"] == cutout and m["box_sets"] == "per_pair"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    from objssl.config import validate_config

    cfg = load_config(str(path))
    before = __import__("copy").deepcopy(cfg)
    validate_config(cfg)
    assert cfg == before  # validation never changes the config


@pytest.mark.parametrize("override, message", [
    ("optim.lr=abc", "optim.lr must be a positive number, got 'abc'"),
    ("optim.lr=0", "optim.lr must be a positive number"),
    ("optim.lr=.nan", "optim.lr must be a positive number"),
    ("optim.weight_decay=-1", "optim.weight_decay must be a non-negative number"),
    ("optim.warmup_steps=-5", "optim.warmup_steps must be a non-negative integer or null, got -5"),
    ("optim.warmup_start_ratio=2", "optim.warmup_start_ratio must be a number in [0, 1]"),
    ("optim.clip_grad=0", "optim.clip_grad must be a positive number or null"),
    ("optim.exclude_1d=maybe", "optim.exclude_1d must be true or false"),
    ("data.num_workers=-1", "data.num_workers must be a non-negative integer, got -1"),
    ("data.num_workers=1.5", "data.num_workers must be a non-negative integer"),
    ("data.min_side=0", "data.min_side must be a positive integer"),
    ("train.epochs=0", "train.epochs must be a positive integer, got 0"),
    ("train.batch_size=true", "train.batch_size must be a positive integer, got True"),
    ("train.seed=-1", "train.seed must be a non-negative integer"),
    ("train.device=gpu", "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train.out=''", "train.out must be a folder path"),
    ("train.tensorboard=yes please", "train.tensorboard must be true or false"),
    ("backbone.out_indices=3", "backbone.out_indices must be a list of integers or null"),
])
def test_bad_values_are_one_line_config_errors(override, message):
    from objssl.config import apply_overrides, validate_config
    from objssl.errors import ConfigError

    cfg = apply_overrides(load_config(), ["backbone.name=test_resnet", override])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pipeline_configs_are_the_orl_ones():
    assert sorted(p.name for p in PIPELINES) == ["orl_coco_r50.yaml", "orl_demo.yaml"]


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_pipeline_stages_validate_and_build_their_methods(path, tmp_path):
    from objssl.config import validate_config
    from objssl.pipelines.orl_config import load_orl_config

    cfg = load_orl_config(str(path))
    for stage in ("stage1", "stage3"):
        c = cfg[stage]
        c["data"]["correspondence"] = str(tmp_path)  # set by the pipeline for stage 3
        validate_config(c)
        kwargs = {k: v for k, v in c["method"].items() if k != "name"}
        kwargs.update({k: 16 for k in ("proj_hidden_dim", "pred_hidden_dim") if k in kwargs})
        assert create_method(c["method"]["name"], create_backbone("test_resnet"), **kwargs).name == c["method"]["name"]
    assert (cfg["stage1"]["method"]["name"], cfg["stage3"]["method"]["name"]) == ("byol", "orl")
