"""``objssl orl``: stages 1 → 3 on real photos, killed and resumed, bad images and input checks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from objssl.errors import ConfigError, UserError
from objssl.pipelines.orl import run_orl
from objssl.pipelines.orl_config import load_orl_config

pytestmark = pytest.mark.faiss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "configs", "orl_demo.yaml")
#: the demo config on a 0.3M-parameter model at 32-48 px, 2 steps per training stage
TINY = [
    *(f"{s}.{kv}" for s in ("stage1", "stage3") for kv in (
        "backbone.name=test_resnet", "method.proj_hidden_dim=32", "method.pred_hidden_dim=32",
        "method.proj_dim=16", "method.image_size=48", "train.batch_size=4", "train.max_steps=2",
        "train.ckpt_every=1", "train.tensorboard=false")),
    "stage3.method.patch_size=16", "stage3.train.max_steps=4",
    "stage2.crop_size=32", "stage2.feature_resize=40", "stage2.feature_crop=32", "stage2.shard_size=2",
]

KILL_AFTER_FIRST_SHARD = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from objssl.pipelines.orl import run_orl
from objssl.pipelines.orl_config import load_orl_config

def hook(kind, shard):
    if kind == "boxes" and shard == 1:
        os.kill(os.getpid(), signal.SIGKILL)

cfg = load_orl_config({config!r}, {overrides!r}, data={data!r})
run_orl(cfg, {out!r}, stages=(1, 2), on_shard=hook)
"""


def data_with_bad_images(tmp_path):
    from objssl.data import demo_images

    data = tmp_path / "data"
    data.mkdir()
    for p in demo_images()[:6]:
        shutil.copy(p, data)
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (data / "tiny.png").write_bytes(b"")
    return str(data)


def shard_files(out):
    corr = os.path.join(out, "stage2", "correspondence")
    return {n: os.stat(os.path.join(corr, n)).st_mtime_ns for n in os.listdir(corr) if n.startswith("boxes-0000")}


def test_sigkill_in_stage2_then_resume_keeps_finished_shards_and_counts_bad_images(tmp_path):
    data, out = data_with_bad_images(tmp_path), str(tmp_path / "out")
    script = tmp_path / "killed.py"
    script.write_text(KILL_AFTER_FIRST_SHARD.format(repo=REPO, config=DEMO, overrides=TINY, data=data, out=out))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    before = shard_files(out)
    # shards 0 and 1 of stage 2c were written (the kill came right after shard 1), stage 2 is unfinished
    assert {"boxes-00000.json", "boxes-00001.json"} <= set(before)
    assert not os.path.exists(os.path.join(out, "stage2", "correspondence", "meta.json"))
    with pytest.raises(UserError, match="--resume"):
        run_orl(load_orl_config(DEMO, TINY, data=data), out, stages=(1, 2))
    result = run_orl(load_orl_config(DEMO, TINY, data=data), out, stages=(1, 2), resume=True)
    assert result["stage1"]["reused"]
    s2 = result["stage2"]
    assert s2["boxes_shards"] == {"done": 1, "reused": 2, "redone": 0}
    after = shard_files(out)
    assert all(after[n] == before[n] for n in before)
    # the two bad files: skipped at 2a (counted), not among the images of stage 2
    assert s2["images_skipped"] == 2 and s2["images"] == 6
    from objssl.correspondence.store import CorrespondenceStore

    store = CorrespondenceStore.open(os.path.join(out, "stage2"))
    assert len(store) == 6 and not any(p.endswith(("broken.jpg", "tiny.png")) for p in store.images)
    assert all(len(store.boxes(i)) >= 1 for i in range(6))
    # a finished stage 2 is not touched again
    again = run_orl(load_orl_config(DEMO, TINY, data=data), out, stages=(2,), resume=True)
    assert again["stage2"] == {"reused": True} and shard_files(out) == after
    # a shard corrupted after the end is named and redone on the next run
    pairs = os.path.join(out, "stage2", "correspondence", "pairs-00001.npy")
    with open(pairs, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x7f")
    redo = run_orl(load_orl_config(DEMO, TINY, data=data), out, stages=(2,), resume=True)
    assert redo["stage2"]["pairs_shards"]["redone"] == 1
    CorrespondenceStore.open(os.path.join(out, "stage2"))
    # ... nor reused for other settings
    with pytest.raises(ConfigError, match=r"was built from other stage2 settings \(knn_k\)"):
        run_orl(load_orl_config(DEMO, [*TINY, "stage2.knn_k=2"], data=data), out, stages=(2, 3), resume=True)


def test_stage_inputs_are_checked(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(UserError, match="stage 1 is not finished"):
        run_orl(load_orl_config(DEMO, TINY), out, stages=(2,))
    run_orl(load_orl_config(DEMO, TINY), out, stages=(1,), resume=True)
    other = [*TINY, "stage3.backbone.name=resnet18"]
    with pytest.raises(ConfigError, match="is a test_resnet run but stage3.backbone.name is 'resnet18'"):
        run_orl(load_orl_config(DEMO, other), out, stages=(2, 3), resume=True)
    with pytest.raises(UserError, match="stage 2 is not finished"):
        run_orl(load_orl_config(DEMO, TINY), out, stages=(3,), resume=True)
    with pytest.raises(ConfigError, match="consecutive"):
        run_orl(load_orl_config(DEMO, TINY), out, stages=(1, 3), resume=True)


def test_command_errors_are_one_line(tmp_path, capsys):
    from objssl.cli import main

    assert main(["orl", "--config", DEMO, "--out", str(tmp_path / "o"), "--stages", "1,3", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be consecutive" in err and len(err.splitlines()) == 1
    assert main(["orl", "--config", DEMO, "--out", str(tmp_path / "o"), "train.max_steps=1"]) == 2
    assert "start it with the stage" in capsys.readouterr().err


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="start it with the stage"):
        load_orl_config(DEMO, ["train.max_steps=3"])
    with pytest.raises(ConfigError, match="unknown config key 'stage2.knn'"):
        load_orl_config(DEMO, ["stage2.knn=3"])
    with pytest.raises(ConfigError, match="stage2.pair_ratio=0"):
        load_orl_config(DEMO, ["stage2.pair_ratio=0"])
    cfg = load_orl_config(os.path.join(REPO, "configs", "orl_coco_r50.yaml"))
    assert cfg["stage2"]["knn_k"] == 10 and cfg["stage2"]["pair_ratio"] == 0.1
    assert cfg["stage2"]["proposals"]["source"] == "selective_search"
    for s in ("stage1", "stage3"):
        c = cfg[s]
        assert (c["optim"]["lr"], c["optim"]["weight_decay"], c["optim"]["exclude_1d"]) == (0.4, 1e-4, False)
        assert (c["train"]["batch_size"], c["train"]["epochs"], c["optim"]["warmup_epochs"]) == (512, 800, 4)
        assert c["data"]["path"] == "data/coco/train2017" and c["backbone"]["name"] == "resnet50"
    assert cfg["stage3"]["method"]["name"] == "orl" and cfg["stage3"]["method"]["patch_size"] == 96


def losses(out):
    with open(os.path.join(out, "stage3", "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def test_sigkill_in_stage3_then_resume_gives_the_uninterrupted_losses(tmp_path, one_torch_thread):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_orl(load_orl_config(DEMO, TINY), a, stages=(1, 2))
    shutil.copytree(a, b)
    run_orl(load_orl_config(DEMO, TINY), a, stages=(3,), resume=True)
    cmd = [sys.executable, "-m", "objssl.cli", "orl", "--config", DEMO, "--out", b, "--stages", "3", "--resume", *TINY]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = os.path.join(b, "stage3", "checkpoints", "step_00000002.pth")
    deadline = time.time() + 240
    while not os.path.exists(ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(ckpt) and not os.path.exists(os.path.join(b, "stage3", "stage_done.json"))
    result = run_orl(load_orl_config(DEMO, TINY), b, stages=(1, 2, 3), resume=True)
    assert result["stage1"]["reused"] and result["stage2"]["reused"] and result["stage3"]["step"] == 4
    la, lb = losses(a), losses(b)
    assert sorted(la) == sorted(lb) == [1, 2, 3, 4]
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=1e-5, abs=1e-6), step
