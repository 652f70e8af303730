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
    state = torch.load(ckpt, weights_only=True)["model"]
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


def test_overrides_are_taken_anywhere_on_the_line():
    from objssl.cli import parse_args

    _, args = parse_args(["pretrain", "train.seed=1", "--data", "X", "optim.lr=0.3", "--max-steps", "2", "a.b=3"])
    assert args.overrides == ["train.seed=1", "optim.lr=0.3", "a.b=3"]
    assert args.data == "X" and args.max_steps == 2 and args.resume is False and args.resume_from is None
    # --resume is a plain flag: what follows it is an override, not a checkpoint path
    _, args = parse_args(["pretrain", "--resume", "method.image_size=64"])
    assert args.resume is True and args.overrides == ["method.image_size=64"]
    _, args = parse_args(["pretrain", "--resume-from", "run/checkpoints/step_00000002.pth", "x.y=1"])
    assert args.resume_from == "run/checkpoints/step_00000002.pth" and args.overrides == ["x.y=1"]


@pytest.mark.parametrize("argv", [
    ["pretrain", "a.b=1", "--bogus", "c.d=2"],
    ["pretrain", "--resume", "--resume-from", "x.pth"],
    ["export", "x.pth", "--to", "timm", "-o", "y.pth", "a.b=1"],
])
def test_unknown_flags_and_stray_words_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "0"], "train.epochs must be a positive integer, got 0"),
    (["optim.lr=abc"], "optim.lr must be a positive number, got 'abc'"),
    (["data.num_workers=-1"], "data.num_workers must be a non-negative integer, got -1"),
    (["optim.warmup_steps=-5"], "optim.warmup_steps must be a non-negative integer or null, got -5"),
    (["--import", "no_such_module_of_objssl"], "--import no_such_module_of_objssl: ModuleNotFoundError"),
])
def test_bad_values_are_one_line_in_process(extra, message, tmp_path, photo_folder, capsys):
    code = main(["pretrain", "--data", str(photo_folder), "--out", str(tmp_path / "run"), "--backbone", "test_resnet",
                 *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_used_out_is_refused_then_overwritten_or_resumed_from_a_file(tmp_path, photo_folder, capsys):
    out = tmp_path / "run"
    base = ["pretrain", "--data", str(photo_folder), "--out", str(out), *TINY]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a run" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert main([*base, "--overwrite"]) == 0
    assert len(list(tmp_path.glob("run.old-*"))) == 1
    more = [a if a != "2" else "3" for a in base]  # --max-steps 3
    assert main([*more, "--resume-from", str(out / "checkpoints" / "step_00000002.pth")]) == 0
    assert "done: step 3/3" in capsys.readouterr().out


def test_import_makes_a_user_method_usable(tmp_path, photo_folder, monkeypatch, capsys):
    plugin = tmp_path / "my_objssl_parts.py"
    plugin.write_text(
        "from objssl.methods import BYOL\n"
        "from objssl.registry import METHODS\n\n\n"
        "@METHODS.register('cli_test_byol')\n"
        "class UserBYOL(BYOL):\n"
        "    name = 'cli_test_byol'\n"
    )
    args = ["pretrain", "--method", "cli_test_byol", "--data", str(photo_folder), *TINY]
    assert main([*args, "--out", str(tmp_path / "no")]) == 2
    assert "cli_test_byol" in capsys.readouterr().err  # unknown without the import
    monkeypatch.chdir(tmp_path)  # found as a module name from the current folder
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["pretrain", "--import", "my_objssl_parts", *args[1:], "--out", str(tmp_path / "run")]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step_00000002.pth", weights_only=True)
    assert ckpt["method"] == "cli_test_byol"
    # a .py file works too
    other = tmp_path / "elsewhere" / "parts_file.py"
    other.parent.mkdir()
    other.write_text(plugin.read_text().replace("cli_test_byol", "cli_test_byol_file"))
    args = ["--method", "cli_test_byol_file", "--data", str(photo_folder), *TINY, "--out", str(tmp_path / "run2")]
    assert main(["pretrain", "--import", str(other), *args]) == 0
