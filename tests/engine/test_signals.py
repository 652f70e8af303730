"""SIGTERM to the whole process group (as Slurm, systemd and Kubernetes send it): the run finishes its
step, writes a checkpoint, says how to continue and exits with status 3; --resume continues."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

TINY = ["--backbone", "test_resnet", "--batch-size", "4", "method.proj_hidden_dim=32", "method.pred_hidden_dim=32",
        "method.proj_dim=16", "method.image_size=48", "optim.warmup_steps=1", "train.progress=false",
        "train.tensorboard=false", "train.log_every=1", "train.ckpt_every=1000"]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_sigterm_to_the_process_group_stops_after_a_checkpoint_and_resume_continues(tmp_path, photo_folder):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "objssl.cli", "pretrain", "--data", str(photo_folder), "--out", str(out), *TINY]
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([*cmd, "--max-steps", "1000", "--workers", "2"], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            metrics = out / "metrics.jsonl"
            while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
                assert proc.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "no step logged in time"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGTERM)  # main process and its loader workers alike
            stdout, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    log = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 3, stdout + log[-3000:]
    found = re.search(r"stopped at step (\d+)/1000; continue with --resume", stdout)
    assert found, stdout
    step = int(found.group(1))
    assert 1 <= step < 1000
    assert "Traceback" not in log and "killed by signal" not in log
    assert os.listdir(out / "checkpoints") == [f"step_{step:08d}.pth"]

    resumed = subprocess.run([*cmd, "--max-steps", str(step + 1), "--workers", "0", "--resume"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stderr and f"done: step {step + 1}/{step + 1}" in resumed.stdout
    with open(out / "metrics.jsonl") as f:
        assert [int(re.search(r'"step": (\d+)', line).group(1)) for line in f] == list(range(1, step + 2))
