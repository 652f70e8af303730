"""Every shipped config loads, validates, and builds its method with the settings it claims."""

from pathlib import Path

import pytest

from objssl import create_backbone, create_method
from objssl.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


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
    ("soco_fpn_coco.yaml", 1.0, 1e-5, 2048, 100, 10),
    ("soco_star.yaml", 1.0, 1e-5, 2048, 400, 10),
    ("soco_c4.yaml", 1.0, 1e-5, 2048, 100, 10),
])
def test_paper_settings(name, lr, wd, batch, epochs, warmup):
    cfg = load_config(str(CONFIGS[0].parent / name))
    o, t = cfg["optim"], cfg["train"]
    assert (o["name"], o["lr"], o["weight_decay"], o["exclude_1d"]) == ("lars", lr, wd, True)
    assert (t["batch_size"], t["epochs"], o["warmup_epochs"], o["min_lr"]) == (batch, epochs, warmup, 1e-6)
    assert o["kwargs"]["trust_coeff"] == 0.001
