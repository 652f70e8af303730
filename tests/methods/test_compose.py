"""``compose``: methods from config alone — the shipped demo compositions train and export, and every
incompatible composition is one line before any model is built."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from objssl.cli import main
from objssl.config import apply_overrides, load_config, validate_config
from objssl.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["--backbone", "test_resnet", "--batch-size", "4", "--max-steps", "2", "--workers", "0",
         "method.image_size=64", "train.progress=false"]


@pytest.mark.parametrize("config", ["compose_soco_slotcon_demo.yaml", "compose_byol_slotcon_demo.yaml"])
def test_demo_composition_trains_and_exports_to_timm(config, demo_proposals, tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(CONFIGS / config), "--out", str(out), *SMALL]
    if "soco" in config:
        args.append(f"data.proposals={demo_proposals}")
    assert main(args) == 0
    ckpt = out / "checkpoints" / "step_00000002.pth"
    metrics = (out / "metrics.jsonl").read_text()
    assert "loss_slot" in metrics and ("loss_soco_boxes" in metrics if "soco" in config else "loss_byol_global" in metrics)
    weights = tmp_path / "backbone.pth"
    assert main(["export", str(ckpt), "--to", "timm", "-o", str(weights)]) == 0
    model = timm.create_model("test_resnet", num_classes=0)
    sd = torch.load(weights, weights_only=True)
    model.load_state_dict(sd, strict=True)
    state = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(v, state[f"target.backbone.model.{k}"]) for k, v in sd.items())


def _compose(views, *objectives, **extra):
    cfg = apply_overrides(load_config(), ["backbone.name=test_resnet"])
    cfg["method"] = {"name": "compose", "views": views, "objectives": list(objectives), **extra}
    return cfg


@pytest.mark.parametrize("views, objectives, message", [
    ("slotcon", [{"name": "soco_boxes"}], r"method.objectives\[0\]: soco_boxes needs boxes, which views='slotcon' do not"),
    ("soco", [{"name": "slotcon_slot"}], "unknown objective 'slotcon_slot'. Did you mean 'slotcon_slots'"),
    ("soco", [{"name": "soco_boxes", "fpn_chanels": 8}], r"unknown config key 'method.objectives\[0\].fpn_chanels'.*'fpn_channels'"),
    ("soco", [{"name": "soco_boxes", "proj_dim": 0}], r"method.objectives\[0\].proj_dim=0: must be positive"),
    ("soco", [{"name": "soco_boxes", "weight": -1}], r"method.objectives\[0\].weight=-1"),
    ("soco", [{"name": "soco_boxes"}, {"name": "soco_boxes"}], "listed twice"),
    ("sooc", [{"name": "soco_boxes"}], "no such view preset. Did you mean 'soco'"),
    ("slotcon", [{"name": "slotcon_pixel", "num_prototypes": 8}, {"name": "slotcon_slots", "num_prototypes": 16}],
     "share the 'slotcon' heads"),
    ("soco", [], "non-empty list"),
])
def test_incompatible_composition_is_refused_before_building(views, objectives, message, monkeypatch):
    import objssl.engine.build as trainer_module
    from objssl.engine import Trainer

    monkeypatch.setattr(trainer_module, "create_backbone", lambda *a, **k: pytest.fail("model built"))
    cfg = _compose(views, *objectives)
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(cfg)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg)


def test_incompatible_composition_on_the_cli_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "objssl.cli", "pretrain", "--config",
                           str(CONFIGS / "compose_byol_slotcon_demo.yaml"), "method.views=byol",
                           "method.objectives=[{name: soco_c4_boxes}]", "--max-steps", "1"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=300)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "soco_c4_boxes needs boxes" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_shared_group_arguments_given_once_apply_to_every_term():
    from objssl import create_backbone, create_method

    method = create_method("compose", create_backbone("test_resnet"), views="slotcon", image_size=64, objectives=[
        {"name": "slotcon_pixel", "num_prototypes": 8, "proj_hidden_dim": 16, "proj_dim": 16},
        {"name": "slotcon_slots", "weight": 0.5}])
    assert method.objectives["slotcon_slots"].num_prototypes == 8
    assert method.objectives["slotcon_pixel"].center.shape == (1, 8)
    assert method.online["slotcon_slots"]["predictor"].out_dim == 16
    assert method.weights == {"slotcon_pixel": 1.0, "slotcon_slots": 0.5}


@pytest.mark.parametrize("method, kwargs, views, objectives", [
    ("soco", dict(fpn_channels=16, box_fc_dim=16, proj_hidden_dim=16, proj_dim=16), "soco",
     [{"name": "soco_boxes", "fpn_channels": 16, "box_fc_dim": 16, "proj_hidden_dim": 16, "proj_dim": 16}]),
    ("slotcon", dict(num_prototypes=8, proj_hidden_dim=16, proj_dim=16, group_loss_weight=0.25), "slotcon",
     [{"name": "slotcon_pixel", "weight": 0.25, "num_prototypes": 8, "proj_hidden_dim": 16, "proj_dim": 16},
      {"name": "slotcon_slots", "weight": 0.75}]),
])
def test_a_paper_method_written_as_a_composition_is_the_same_model(method, kwargs, views, objectives):
    """The named methods are term lists: composing the same terms gives the same weights and the same loss."""
    from objssl import create_backbone, create_method
    from objssl.methods.checks import _batch

    torch.manual_seed(0)
    named = create_method(method, create_backbone("test_resnet"), image_size=64, **kwargs)
    torch.manual_seed(0)
    composed = create_method("compose", create_backbone("test_resnet"), image_size=64, views=views, objectives=objectives)
    a, b = named.state_dict(), composed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _, batch = _batch(frozenset({"views", "boxes", "overlap"}) if method == "soco" else frozenset({"views"}), 64)
    torch.testing.assert_close(named(batch)["loss"], composed(batch)["loss"], rtol=0, atol=0)
