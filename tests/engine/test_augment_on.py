"""``data.augment_on``: every method trains with its views made in the loader or on the training device
(the demo photos, on a CPU), and a run resumes exactly on both paths."""

import json

import pytest
import torch

import objssl  # noqa: F401 - registers the built-in methods
from objssl.config import apply_overrides, load_config
from objssl.engine import Trainer
from objssl.errors import ConfigError
from objssl.methods.checks import tiny_kwargs
from objssl.registry import METHODS

NAMES = [n for n in METHODS.names() if n not in ("compose", "orl")]  # ORL: tests/methods/test_orl.py


def _config(name, out, demo_proposals, augment_on, workers=0, steps=2):
    cls = METHODS.get(name)
    method = [f"method.{k}={v}" for k, v in tiny_kwargs(cls).items()]
    cfg = apply_overrides(load_config(), [
        f"method.name={name}", *method, "method.image_size=48", "backbone.name=test_resnet",
        f"data.augment_on={augment_on}", f"data.num_workers={workers}", f"train.out={out}", "train.batch_size=4",
        f"train.max_steps={steps}", "train.ckpt_every=100", "train.progress=false", "optim.warmup_steps=1",
    ])
    if cls.needs_proposals(cfg["method"]):
        cfg["data"]["proposals"] = demo_proposals
    return cfg


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_every_method_trains_with_views_made_on_the_device(name, demo_proposals, tmp_path, one_torch_thread):
    trainer = Trainer(_config(name, tmp_path / "run", demo_proposals, "device"))
    assert trainer.parts.device_views is not None and trainer.dataset.device_mode
    summary = trainer.fit()
    assert summary["step"] == 2 and all(torch.isfinite(torch.tensor(_losses(tmp_path / "run"))))


def test_auto_makes_views_in_the_loader_on_a_cpu(demo_proposals, tmp_path):
    trainer = Trainer(_config("byol", tmp_path / "run", demo_proposals, "auto"))
    assert trainer.parts.device_views is None and not trainer.dataset.device_mode
    with pytest.raises(ConfigError, match="data.augment_on"):
        Trainer(_config("byol", tmp_path / "bad", demo_proposals, "gpu"))


@pytest.mark.parametrize("name, augment_on", [("byol", "device"), ("soco_star", "device"), ("univip", "device"),
                                              ("soco_star", "loader")])
def test_resume_is_exact_on_both_paths(name, augment_on, demo_proposals, tmp_path, one_torch_thread):
    full = Trainer(_config(name, tmp_path / "full", demo_proposals, augment_on, steps=4))
    full.fit()
    split_cfg = _config(name, tmp_path / "split", demo_proposals, augment_on, workers=2, steps=4)
    first = Trainer(split_cfg)
    first.fit(stop_after_steps=2)
    del first
    torch.manual_seed(12345)  # the RNG state of the process must not matter: it is restored
    second = Trainer(split_cfg, resume=True)
    assert second.step == 2
    second.fit()
    assert _losses(tmp_path / "full") == _losses(tmp_path / "split")
    a, b = full.method.state_dict(), second.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_objssl_pretrain_takes_augment_on(demo_proposals, tmp_path):
    from objssl.cli import main

    out = tmp_path / "cli"
    args = ["pretrain", "--method", "soco_star", "--backbone", "test_resnet", "--max-steps", "2", "--batch-size", "4",
            "--workers", "0", "--out", str(out), f"data.proposals={demo_proposals}", "data.augment_on=device",
            "method.image_size=48", "train.progress=false"]
    args += [f"method.{k}={v}" for k, v in tiny_kwargs(METHODS.get("soco_star")).items()]
    assert main(args) == 0
    log = (out / "log.txt").read_text()
    assert "views made on the device" in log and (out / "checkpoints" / "step_00000002.pth").exists()
