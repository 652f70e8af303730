"""torchrun with 2 CPU processes (gloo) gives the same update as 1 process at the same global batch."""

import os
import socket
import subprocess
import sys

import pytest
import torch

ARGS = [
    "pretrain", "--backbone", "test_vit", "--batch-size", "4", "--max-steps", "2", "--workers", "0",
    "method.head_norm=ln", "method.proj_hidden_dim=32", "method.pred_hidden_dim=32", "method.proj_dim=16",
    "method.image_size=48", "optim.name=sgd", "optim.lr=2.0", "optim.warmup_steps=0",
    "train.progress=false", "train.ckpt_every=1",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_two_process_gloo_equals_one_process(tmp_path, photo_folder, augment_on):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    common = ARGS + ["--data", str(photo_folder), f"data.augment_on={augment_on}"]
    _run([sys.executable, "-m", "objssl.cli", *common, "--out", str(tmp_path / "one")], env)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
          str(_free_port()), "-m", "objssl.cli", *common, "--out", str(tmp_path / "two")], env)
    def load(run, step):
        return torch.load(tmp_path / run / "checkpoints" / f"step_{step:08d}.pth", weights_only=True)

    for step in (1, 2):
        one, two = load("one", step), load("two", step)
        assert one["model"].keys() == two["model"].keys()
        for k, a in one["model"].items():
            torch.testing.assert_close(a, two["model"][k], atol=2e-6, rtol=1e-5, msg=f"step {step}: {k}")
    # the comparison is not vacuous: the second step changed the online weights
    s1, s2 = load("one", 1)["model"], load("one", 2)["model"]
    changed = [k for k in s1 if k.startswith("online.") and not torch.equal(s1[k], s2[k])]
    assert len(changed) > 10
    # both runs log the same (all-reduced) losses
    l1 = [float(line.split('"loss": ')[1].split(",")[0]) for line in open(tmp_path / "one" / "metrics.jsonl")]
    l2 = [float(line.split('"loss": ')[1].split(",")[0]) for line in open(tmp_path / "two" / "metrics.jsonl")]
    assert len(l1) == len(l2) == 2
    assert l1 == pytest.approx(l2, abs=1e-5)


FAIL_ON_RANK_1 = '''
# reading fails on rank 1 from its third sample on (its second step): a disk gone, a bucket unmounted
import os
from objssl.data import dataset
_read = dataset.ImageDataset.__getitem__
_calls = [0]
def _getitem(self, key):
    _calls[0] += 1
    if os.environ.get("RANK") == "1" and _calls[0] > 2:
        raise RuntimeError("input/output error")
    return _read(self, key)
dataset.ImageDataset.__getitem__ = _getitem
'''


def test_a_data_error_on_one_process_stops_every_process(tmp_path, photo_folder):
    (tmp_path / "fail_on_rank_1.py").write_text(FAIL_ON_RANK_1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "objssl.cli", *ARGS, "--data", str(photo_folder), "--out", str(tmp_path / "run"),
           "--import", str(tmp_path / "fail_on_rank_1.py"), "train.max_steps=4"]
    # without the agreement rank 0 waits in step 2's all-reduce until the process group times out
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "reading the data for step 2 failed: RuntimeError: input/output error" in out  # rank 1
    assert "reading the data for step 2 failed on another process" in out  # rank 0
