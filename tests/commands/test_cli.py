"""The CLI as users type it: list, pretrain, export, and one-line errors."""

import os
import subprocess
import sys

import pytest
import timm
import torch

from objssl.cli import main


def _cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "objssl.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def test_list_methods_and_everything(capsys):
    assert main(["list", "methods"]) == 0
    assert "byol" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("methods:", "heads:", "losses:", "exporters:", "backbones:"):
        assert section in out
    assert "mlp2d" in out and "timm" in out


def test_list_backbones_pattern(capsys):
    assert main(["list", "backbones", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "convnext" not in out


TINY = ["--backbone", "test_resnet", "--batch-size", "4", "--max-steps", "2", "--workers", "0",
        "method.proj_hidden_dim=32", "method.pred_hidden_dim=32", "method.image_size=48",
        "train.progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photo_folder):
    out = tmp_path_factory.mktemp("cli_run")
    assert main(["pretrain", "--data", str(photo_folder), "--out", str(out), *TINY]) == 0
    return out


def test_pretrain_then_export_to_timm_round_trip(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "step_00000002.pth"
    assert ckpt.is_file() and list((trained / "tb").iterdir())
    weights = tmp_path / "backbone.pth"
    assert main(["export", str(ckpt), "--to", "timm", "-o", str(weights)]) == 0
    assert "not exported" in capsys.readouterr().out  # heads are named, not silently dropped
    # the documented way to load it: no hub, no missing keys
    model = timm.create_model("test_resnet", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)),
                              num_classes=0)
    strict = timm.create_model("test_resnet", num_classes=0)
    result = strict.load_state_dict(torch.load(weights), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    state = torch.load(ckpt, weights_only=False)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["target.backbone.model." + k]), k
    # exporter options reach the exporter; one it does not take is a one-line error
    assert main(["export", str(ckpt), "--to", "timm", "-o", str(tmp_path / "x.pth"), "--opt", "layout=c4"]) == 2
    assert "unexpected keyword" in capsys.readouterr().err
    # --which student exports the online weights instead
    student = tmp_path / "student.safetensors"
    assert main(["export", str(ckpt), "--to", "timm", "-o", str(student), "--which", "student"]) == 0
    from safetensors.torch import load_file

    sd = load_file(student)
    assert all(torch.equal(v, state["online.backbone.model." + k]) for k, v in sd.items())
    assert not all(torch.equal(v, state["target.backbone.model." + k]) for k, v in sd.items())


def test_resume_from_cli_continues(tmp_path, photo_folder):
    out = tmp_path / "run"
    base = ["pretrain", "--data", str(photo_folder), "--out", str(out), *TINY]
    assert main(base) == 0
    more = [a if a != "2" else "3" for a in base]  # --max-steps 3
    assert main([*more, "--resume"]) == 0
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000002.pth", "step_00000003.pth"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["pretrain", "--backbone", "resnet5O", "--max-steps", "1"], "unknown backbone 'resnet5O'"),
        (["pretrain", "--data", "/no/such/dir", "--max-steps", "1"], "does not exist"),
        (["pretrain", "--method", "byl", "--max-steps", "1"], "Did you mean 'byol'"),
        (["pretrain", "train.epochz=3"], "unknown config key 'train.epochz'. Did you mean 'epochs'"),
        (["pretrain", "method.proj_dimm=3"], "unknown config key 'method.proj_dimm'"),
        (["export", "/no/such.pth", "--to", "timm", "-o", "x.pth"], "does not exist"),
        (["export", "/no/such.pth", "--to", "onnx", "-o", "x.pth"], "unknown export target 'onnx'"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path):
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
