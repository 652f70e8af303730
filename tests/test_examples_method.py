"""examples/custom_method: a method and a term from outside objssl, found through entry points, trained
from the CLI, rebuilt from its checkpoint, and passing check_objective."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_method"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The example as if pip-installed: its source on the path plus a dist-info with its entry points
    (read from its pyproject.toml), which is all importlib.metadata looks at."""
    import tomllib

    site = tmp_path_factory.mktemp("site")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = site / "objssl_byol_dense-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
                     for group, eps in project["entry-points"].items())
    (info / "entry_points.txt").write_text(groups)
    path = os.pathsep.join([str(site), str(EXAMPLE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _run(env, *args, module=True):
    cmd = [sys.executable, "-m", "objssl.cli", *args] if module else [sys.executable, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_plugin_method_trains_and_rebuilds_from_its_checkpoint(plugin_env, tmp_path):
    listing = _run(plugin_env, "list")
    assert "byol_dense" in listing and "dense_byol" in listing and "plugin: objssl-byol-dense" in listing
    out = tmp_path / "run"
    _run(plugin_env, "pretrain", "--method", "byol_dense", "--backbone", "test_resnet", "--max-steps", "2",
         "--batch-size", "4", "--workers", "0", "--out", str(out), "method.image_size=64", "method.proj_dim=16",
         "method.proj_hidden_dim=16", "method.pred_hidden_dim=16", "method.dense_hidden_dim=16",
         "train.progress=false", "train.log_every=1")
    assert "loss_dense_byol" in (out / "metrics.jsonl").read_text()
    ckpt = out / "checkpoints" / "step_00000002.pth"
    check = ("import sys, torch; from objssl.checkpoint import load_checkpoint; "
             "from objssl.methods import method_from_checkpoint; c = load_checkpoint(sys.argv[1]); "
             "m = method_from_checkpoint(c); assert type(m).__name__ == 'BYOLDense', type(m); "
             "assert all(torch.equal(v, m.state_dict()[k]) for k, v in c['model'].items()); print('rebuilt')")
    assert "rebuilt" in _run(plugin_env, "-c", check, str(ckpt), module=False)


def test_plugin_term_passes_check_objective(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from objssl_byol_dense import DenseBYOL

    from objssl.testing import check_objective

    logs = check_objective(DenseBYOL)
    assert torch.isfinite(torch.tensor(logs["loss"]))
