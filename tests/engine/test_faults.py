"""Faults a long run meets, on the CPU: non-finite steps, resuming longer, a used or bad --out, torn
logs, mismatched checkpoints, vanished data, a killed writer's temp files; and the run's counts."""

import copy
import glob
import json
import os
import shutil
import time

import pytest
import torch
from torch.utils.data import default_collate

from objssl.config import apply_overrides
from objssl.data.sampler import ResumableBatchSampler
from objssl.engine import Trainer, TrainingDivergedError
from objssl.errors import DataError, UserError


def _metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _poison(obj):
    """The same batch with every float tensor NaN: BatchNorm running stats become NaN in forward."""
    if isinstance(obj, torch.Tensor):
        return torch.full_like(obj, float("nan")) if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: _poison(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_poison(v) for v in obj)
    return obj


def _tensors(trainer):
    """Every tensor of the run: parameters and buffers (online, EMA target, objectives) and optimizer state."""
    out = {f"model.{k}": v.detach().clone() for k, v in trainer.method.state_dict().items()}
    for i, state in enumerate(trainer.optimizer.state.values()):
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                out[f"optim.{i}.{k}"] = v.detach().clone()
    return out


def test_skipped_nonfinite_step_leaves_every_tensor_as_before(tmp_path, photo_folder, monkeypatch, tiny_config):
    out = tmp_path / "run"
    tr = Trainer(tiny_config(out, photo_folder, max_steps=5, ckpt_every=100, max_nonfinite=3))
    real_forward = type(tr.method).forward
    calls = {"n": 0}
    seen = {}

    def forward(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:  # step 2 of 5: NaN images
            seen["before"] = _tensors(tr)
            return real_forward(self, _poison(batch))
        if calls["n"] == 3:
            seen["after"] = _tensors(tr)
        return real_forward(self, batch)

    monkeypatch.setattr(type(tr.method), "forward", forward)
    summary = tr.fit()
    assert summary["nonfinite_total"] == 1 and summary["step"] == 5
    before, after = seen["before"], seen["after"]
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in before) and any(k.startswith("optim.") for k in before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    ckpt = torch.load(out / "checkpoints" / "step_00000005.pth", weights_only=True)
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert bad == []
    assert ckpt["progress"]["nonfinite_total"] == 1


def test_no_checkpoint_is_written_with_a_nonfinite_tensor(tmp_path, photo_folder, monkeypatch, tiny_config):
    out = tmp_path / "run"
    tr = Trainer(tiny_config(out, photo_folder, max_steps=2, ckpt_every=100))
    real_update = type(tr.method).update_target

    def update_target(self, step, total_steps):
        m = real_update(self, step, total_steps)
        if step == 1:  # the last step leaves a NaN in the EMA target
            next(b for n, b in self.named_buffers() if n.startswith("target.") and "running_var" in n).fill_(float("nan"))
        return m

    monkeypatch.setattr(type(tr.method), "update_target", update_target)
    with pytest.raises(TrainingDivergedError, match=r"step 2: not writing a checkpoint, 1 tensor\(s\) are not finite "
                                                    r"\(e\.g\. model\.target\..*running_var\)") as info:
        tr.fit()
    assert "\n" not in str(info.value)
    assert not glob.glob(str(out / "checkpoints" / "*.pth"))


def test_divergence_is_one_line_naming_the_last_good_checkpoint(tmp_path, photo_folder, monkeypatch, tiny_config):
    out = tmp_path / "run"
    tr = Trainer(tiny_config(out, photo_folder, max_steps=6, ckpt_every=1, max_nonfinite=3))
    real_forward = type(tr.method).forward
    calls = {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        res = real_forward(self, batch)
        if calls["n"] > 1:
            res["loss"] = res["loss"] * float("nan")
        return res

    monkeypatch.setattr(type(tr.method), "forward", forward)
    with pytest.raises(TrainingDivergedError) as info:
        tr.fit()
    msg = str(info.value)
    assert "3 consecutive non-finite losses at step 4" in msg and "\n" not in msg
    assert f"the last good checkpoint is {out / 'checkpoints' / 'step_00000001.pth'}" in msg
    # the skipped steps wrote no checkpoint
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000001.pth"]


def test_resuming_with_more_steps_rebuilds_the_schedule(tmp_path, photo_folder, tiny_config):
    short = tiny_config(tmp_path / "grow", photo_folder, max_steps=8, ckpt_every=100)
    Trainer(short).fit()
    longer = apply_overrides(short, ["train.max_steps=12"])
    resumed = Trainer(longer, resume=True)
    assert resumed.step == 8
    resumed.fit()
    Trainer(tiny_config(tmp_path / "fresh", photo_folder, max_steps=12, ckpt_every=100)).fit()
    grown = {r["step"]: r for r in _metrics(tmp_path / "grow")}
    fresh = {r["step"]: r for r in _metrics(tmp_path / "fresh")}
    assert sorted(grown) == list(range(1, 13))
    for step in range(9, 13):
        assert grown[step]["lr"] > 0
        assert grown[step]["lr"] == pytest.approx(fresh[step]["lr"], rel=1e-12)
        assert grown[step]["momentum"] == pytest.approx(fresh[step]["momentum"], rel=1e-12)


def test_fresh_run_into_a_used_out_is_refused_unless_overwrite(tmp_path, photo_folder, tiny_config, caplog):
    out = tmp_path / "run"
    cfg = tiny_config(out, photo_folder, max_steps=1)
    Trainer(cfg).fit()
    with pytest.raises(UserError, match="already holds a run .1 checkpoint.s., newest step_00000001.pth.: pass "
                                        "--resume to continue it, --overwrite to move it aside") as info:
        Trainer(cfg)
    assert "\n" not in str(info.value)
    assert os.path.isfile(out / "checkpoints" / "step_00000001.pth")  # untouched
    Trainer(cfg, overwrite=True).fit()
    aside = glob.glob(str(tmp_path / "run.old-*"))
    assert len(aside) == 1 and os.path.isfile(os.path.join(aside[0], "checkpoints", "step_00000001.pth"))
    assert os.path.isfile(out / "checkpoints" / "step_00000001.pth") and len(_metrics(out)) == 1
    assert "moved to" in caplog.text and aside[0] in caplog.text


def test_a_torn_last_metrics_line_does_not_break_resume(tmp_path, photo_folder, tiny_config, caplog):
    out = tmp_path / "run"
    Trainer(tiny_config(out, photo_folder, max_steps=3, ckpt_every=100)).fit()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "epoch": 1, "loss": 0.')  # killed mid-write
    Trainer(tiny_config(out, photo_folder, max_steps=4), resume=True).fit()
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3, 4]
    assert "dropped 1 unreadable line" in caplog.text


def test_out_under_a_file_is_one_line(tmp_path, photo_folder, tiny_config):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is under .*notes.txt.*which is a file; choose a folder"):
        Trainer(tiny_config(blocker / "run", photo_folder))
    with pytest.raises(UserError, match="is a file; choose a folder"):
        Trainer(tiny_config(blocker, photo_folder))


def test_resume_with_other_head_sizes_is_one_line(tmp_path, photo_folder, tiny_config):
    out = tmp_path / "run"
    cfg = tiny_config(out, photo_folder, max_steps=1)
    Trainer(cfg).fit()
    wider = apply_overrides(cfg, ["train.max_steps=2", "method.proj_hidden_dim=64"])
    with pytest.raises(UserError) as info:
        Trainer(wider, resume=True)
    msg = str(info.value)
    assert "\n" not in msg and "step_00000001.pth: its model does not match the config" in msg
    assert "online.byol_global.projector" in msg and "[32" in msg and "[64" in msg


def test_every_image_deleted_mid_run_is_one_line(tmp_path, photo_folder, tiny_config):
    data = tmp_path / "data"
    shutil.copytree(photo_folder, data)
    cfg = apply_overrides(tiny_config(tmp_path / "run", data, max_steps=4), ["data.num_workers=2"])
    tr = Trainer(cfg)
    tr.fit(stop_after_steps=1)
    for f in data.iterdir():
        f.unlink()
    with pytest.raises(DataError) as info:
        tr.fit()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("reading the data for step 2 failed: RuntimeError: ")
    assert "unreadable" in msg and msg.endswith("continue with --resume")


def test_stale_temp_files_are_removed_on_start(tmp_path, photo_folder, tiny_config, caplog):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    stale = ckpts / ".tmp_k1ll3d"
    stale.write_bytes(b"\0" * 2_000_000)
    past = time.time() - 120
    os.utime(stale, (past, past))
    Trainer(tiny_config(tmp_path / "run", photo_folder, max_steps=1))
    assert not stale.exists()
    assert "removed 1 temp file(s) (2.0 MB)" in caplog.text


def _collate_with_counters(samples):
    batch = default_collate(samples)
    # a stand-in for collate_views' counters: per-sample event counts summed over the batch
    batch["counters"] = {"views/odd_index": (batch["index"] % 2).sum(), "views/any": torch.tensor(len(samples))}
    return batch


def test_counters_are_totalled_logged_and_resumed_exactly(tmp_path, photo_folder, monkeypatch, tiny_config):
    from objssl.methods import BYOL

    monkeypatch.setattr(BYOL, "collate_fn", staticmethod(_collate_with_counters), raising=False)
    full = tiny_config(tmp_path / "full", photo_folder, max_steps=6, ckpt_every=100)
    summary = Trainer(full).fit()
    split = apply_overrides(tiny_config(tmp_path / "split", photo_folder, max_steps=6, ckpt_every=100),
                            ["data.num_workers=2"])
    Trainer(split).fit(stop_after_steps=3)
    ckpt = torch.load(tmp_path / "split" / "checkpoints" / "step_00000003.pth", weights_only=True)
    assert ckpt["progress"]["counters"]["views/any"] == 12
    resumed = Trainer(split, resume=True).fit()

    # the totals the sampler's draws imply
    sampler = ResumableBatchSampler(12, 4, seed=0)
    expected, odd = [], 0
    for step in range(6):
        sampler.set_epoch(step // 3, step % 3)
        odd += sum(i % 2 for i, _ in next(iter(sampler)))
        expected.append(odd)
    rows = _metrics(tmp_path / "full")
    assert [r["views/odd_index"] for r in rows] == expected and expected[-1] > 0
    assert [r["views/any"] for r in rows] == [4 * s for s in range(1, 7)]
    assert [r["views/odd_index"] for r in _metrics(tmp_path / "split")] == expected
    assert summary["counters"] == resumed["counters"] == {"views/any": 24, "views/odd_index": expected[-1]}
    assert f"views/odd_index {expected[-1]}" in (tmp_path / "full" / "log.txt").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "full" / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/views/odd_index")] == expected


def test_the_callers_config_is_never_changed(tmp_path, tiny_config, caplog):
    cfg = tiny_config(tmp_path / "run", "", batch_size=256, max_steps=1)
    cfg["data"]["path"] = None  # demo photos: the batch is lowered in the run's copy only
    before = copy.deepcopy(cfg)
    tr = Trainer(cfg)
    assert cfg == before
    assert tr.cfg["train"]["batch_size"] < 256 and "lowered to" in caplog.text
