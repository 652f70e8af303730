"""objssl.checkpoint: safe loading, checksums, write failures, rotation, layout upgrade."""

from __future__ import annotations

import ast
import errno
import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from objssl import checkpoint as ckpt_mod
from objssl.checkpoint import (
    CHECKPOINT_VERSION,
    NEWEST_KNOWN_VERSION,
    V1_TO_V2_RENAMES,
    CheckpointCorruptError,
    CheckpointWriteError,
    NonFiniteCheckpointError,
    find_resumable_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    upgrade_checkpoint,
    verify_checkpoint,
)
from objssl.errors import UserError


class Pwn:
    """A pickle that creates a file when unpickled (what a crafted .pth would do)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def write_malicious(path: Path, pwned: Path) -> Path:
    torch.save({"format": "objssl-checkpoint", "version": 1, "method": "byol",
                "backbone": {"name": "test_resnet", "kwargs": {}},
                "model": {"online.backbone.model.conv1.weight": torch.zeros(1)}, "payload": Pwn(pwned)}, path)
    assert not pwned.exists()
    return path


def _state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"method": "byol", "backbone": {"name": "test_resnet", "kwargs": {}},
            "model": {"online.backbone.model.w": torch.randn(64, 64, generator=g),
                      "online.backbone.model.n": torch.tensor(3)},
            "optimizer": {"state": {0: {"exp_avg": torch.randn(64, generator=g)}}, "param_groups": [{"lr": 0.1}]},
            "rng": rng_state(), "config": {"method": {"name": "byol"}}}


def _damage(path: str, offset_fraction: float = 0.5, size: int = 4096) -> None:
    """Overwrite ``size`` bytes in the middle of the file with random bytes (the reported disk fault)."""
    data = bytearray(Path(path).read_bytes())
    start = int(len(data) * offset_fraction)
    data[start:start + size] = np.random.default_rng(0).integers(0, 256, min(size, len(data) - start), dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))


# ------------------------------------------------------------------------------------ safe loading
def test_what_objssl_writes_is_plain_data_and_restores_every_rng(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    path = save_checkpoint(_state(), str(tmp_path), step=1, keep_last=2)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    ckpt = load_checkpoint(path)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(ckpt["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert ckpt["version"] == CHECKPOINT_VERSION


def test_version1_file_with_numpy_rng_state_still_loads(tmp_path):
    np.random.seed(7)
    old = {"format": "objssl-checkpoint", "version": 1, "method": "byol", "backbone": {"name": "x", "kwargs": {}},
           "model": {}, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                "python": random.getstate()}}
    torch.save(old, tmp_path / "old.pth")
    expected = float(np.random.rand())
    ckpt = load_checkpoint(tmp_path / "old.pth")
    np.random.seed(0)
    set_rng_state(ckpt["rng"])
    assert float(np.random.rand()) == expected


def test_numpy_allow_list_is_only_for_arrays(tmp_path):
    """The allowance for old numpy RNG arrays does not extend to other numpy objects."""
    torch.save({"format": "objssl-checkpoint", "x": np.random.default_rng(0)}, tmp_path / "gen.pth")
    with pytest.raises(UserError, match="contains objects objssl does not load"):
        load_checkpoint(tmp_path / "gen.pth")


def test_crafted_pickle_is_refused_by_load_checkpoint_and_never_runs(tmp_path):
    pwned = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "evil.pth", pwned)
    with pytest.raises(UserError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert "evil.pth" in msg and "contains objects objssl does not load" in msg and "system" in msg
    assert len(msg.splitlines()) == 1
    assert not pwned.exists()


def test_crafted_pickle_is_refused_by_objssl_export(tmp_path, capsys):
    from objssl.cli import main

    pwned = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "evil.pth", pwned)
    assert main(["export", str(bad), "--to", "timm", "-o", str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "contains objects objssl does not load" in err and len(err.splitlines()) == 1
    assert not pwned.exists() and not (tmp_path / "out.pth").exists()


def test_not_an_objssl_checkpoint(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "timm.pth")
    with pytest.raises(UserError, match="is not an objssl checkpoint"):
        load_checkpoint(tmp_path / "timm.pth")
    with pytest.raises(UserError, match="is a folder"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------ checksums
def test_checksum_travels_inside_the_file(tmp_path):
    path = save_checkpoint(_state(), str(tmp_path), step=8, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["step_00000008.pth"]  # no sidecar, no temp file
    assert Path(path).read_bytes()[-78:].startswith(b"objssl-sha256:")
    assert verify_checkpoint(path) is None
    assert torch.equal(torch.load(path, weights_only=True)["model"]["online.backbone.model.w"],
                       _state()["model"]["online.backbone.model.w"])  # still an ordinary torch file


def test_random_bytes_inside_a_checkpoint_are_refused(tmp_path):
    path = save_checkpoint(_state(), str(tmp_path), step=8, keep_last=2)
    _damage(path)
    assert "no longer match" in verify_checkpoint(path)
    with pytest.raises(CheckpointCorruptError) as info:
        load_checkpoint(path)
    assert "step_00000008.pth" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_older_file_without_checksum_loads_with_a_note_and_its_crcs_are_checked(tmp_path, caplog):
    state = {"format": "objssl-checkpoint", "version": 1, **_state()}
    torch.save(state, tmp_path / "step_00000002.pth")
    with caplog.at_level(logging.INFO, logger="objssl.checkpoint"):
        ckpt = load_checkpoint(tmp_path / "step_00000002.pth")
    assert torch.equal(ckpt["model"]["online.backbone.model.w"], state["model"]["online.backbone.model.w"])
    assert "carries no sha256" in caplog.text
    _damage(str(tmp_path / "step_00000002.pth"))
    with pytest.raises(CheckpointCorruptError, match="CRC-32"):
        load_checkpoint(tmp_path / "step_00000002.pth")


def test_resume_finds_the_newest_good_checkpoint_and_names_the_bad_ones(tmp_path):
    for step in (2, 4, 6, 8):
        save_checkpoint(_state(step), str(tmp_path), step=step, keep_last=10)
    _damage(str(tmp_path / "step_00000008.pth"))
    _damage(str(tmp_path / "step_00000006.pth"), 0.3)
    good, bad = find_resumable_checkpoint(str(tmp_path))
    assert good == str(tmp_path / "step_00000004.pth")
    assert [p for p, _ in bad] == [str(tmp_path / "step_00000008.pth"), str(tmp_path / "step_00000006.pth")]
    assert all("no longer match" in reason for _, reason in bad)
    assert find_resumable_checkpoint(str(tmp_path / "empty")) == (None, [])


def test_rotation_never_deletes_the_newest_good_checkpoint(tmp_path):
    """Resumed from step 4 because 6 and 8 are damaged: saving step 5 with keep_last=2 keeps step 5."""
    for step in (2, 4, 6, 8):
        save_checkpoint(_state(step), str(tmp_path), step=step, keep_last=10)
    _damage(str(tmp_path / "step_00000006.pth"))
    _damage(str(tmp_path / "step_00000008.pth"))
    save_checkpoint(_state(5), str(tmp_path), step=5, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["step_00000005.pth", "step_00000006.pth", "step_00000008.pth"]
    assert find_resumable_checkpoint(str(tmp_path))[0] == str(tmp_path / "step_00000005.pth")


def test_rotation_keeps_last_n(tmp_path):
    for step in range(1, 6):
        save_checkpoint(_state(step), str(tmp_path), step=step, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["step_00000004.pth", "step_00000005.pth"]


def test_nonfinite_state_is_refused_naming_the_tensor(tmp_path):
    first = save_checkpoint(_state(), str(tmp_path), step=1, keep_last=1)
    state = _state()
    state["model"]["online.backbone.model.w"][3, 4] = float("nan")
    with pytest.raises(NonFiniteCheckpointError, match=r"\['model'\]\['online.backbone.model.w'\]"):
        save_checkpoint(state, str(tmp_path), step=2, keep_last=1)
    assert os.listdir(tmp_path) == ["step_00000001.pth"] and verify_checkpoint(first) is None


@pytest.mark.parametrize("room", [0, 3000])  # fails at the first write / inside a tensor record
def test_full_disk_is_one_line_and_leaves_the_earlier_checkpoints(tmp_path, monkeypatch, full_disk, room):
    first = save_checkpoint(_state(1), str(tmp_path), step=1, keep_last=1)
    before = Path(first).read_bytes()
    full_disk(room)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(_state(2), str(tmp_path), step=2, keep_last=1)
    monkeypatch.undo()
    msg = str(info.value)
    assert "step_00000002.pth" in msg and "ENOSPC" in msg and "No space left" in msg
    assert len(msg.splitlines()) == 1
    assert os.listdir(tmp_path) == ["step_00000001.pth"]  # no temp file, nothing rotated out
    assert Path(first).read_bytes() == before


def test_os_error_raised_by_torch_save_itself(tmp_path, monkeypatch):
    def failing_save(obj, f):
        f.write(b"PK partial")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(CheckpointWriteError, match="EIO: Input/output error"):
        save_checkpoint(_state(), str(tmp_path), step=3, keep_last=1)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------ layout upgrade
def _v1(method: str, keys: list[str], **config) -> dict:
    return {"format": "objssl-checkpoint", "version": 1, "method": method,
            "model": {k: torch.tensor(float(i)) for i, k in enumerate(keys)},
            "config": {"method": {"name": method, **config}}}


@pytest.mark.parametrize("method, old, new", [
    ("byol", ["online.backbone.model.conv1.weight", "online.projector.0.weight", "online.predictor.3.bias",
              "target.backbone.model.conv1.weight", "target.projector.0.weight"],
     ["online.backbone.model.conv1.weight", "online.byol_global.projector.0.weight",
      "online.byol_global.predictor.3.bias", "target.backbone.model.conv1.weight",
      "target.byol_global.projector.0.weight"]),
    ("soco", ["online.neck.fpn.inner_blocks.0.0.weight", "online.box_head.fc.weight", "online.projector.0.weight",
              "online.predictor.0.weight", "target.box_head.conv1.weight", "target.projector.0.bias"],
     ["online.neck.fpn.inner_blocks.0.0.weight", "online.soco_boxes.box_head.fc.weight",
      "online.soco_boxes.projector.0.weight", "online.soco_boxes.predictor.0.weight",
      "target.soco_boxes.box_head.conv1.weight", "target.soco_boxes.projector.0.bias"]),
    ("soco_star", ["online.box_head.fc.weight", "target.neck.fpn.layer_blocks.0.0.weight"],
     ["online.soco_boxes.box_head.fc.weight", "target.neck.fpn.layer_blocks.0.0.weight"]),
    ("soco_c4", ["online.projector.0.weight", "online.predictor.0.weight", "target.projector.0.weight"],
     ["online.soco_c4_boxes.projector.0.weight", "online.soco_c4_boxes.predictor.0.weight",
      "target.soco_c4_boxes.projector.0.weight"]),
    ("slotcon", ["online.projector.0.weight", "online.grouping.prototypes.weight", "online.predictor.0.weight",
                 "target.projector.0.weight", "target.grouping.prototypes.weight", "pixel_loss.center"],
     ["online.slotcon.projector.0.weight", "online.slotcon.grouping.prototypes.weight",
      "online.slotcon_slots.predictor.0.weight", "target.slotcon.projector.0.weight",
      "target.slotcon.grouping.prototypes.weight", "objectives.slotcon_pixel.center"]),
])
def test_version1_keys_are_renamed_to_the_version2_layout(method, old, new):
    up = upgrade_checkpoint(_v1(method, old, proposals="cache/", proj_dim=16), to_version=2)
    assert list(up["model"]) == new
    assert [float(v) for v in up["model"].values()] == [float(i) for i in range(len(old))]  # same tensors, same order
    assert up["version"] == 2
    assert up["config"]["method"] == {"name": method, "proj_dim": 16}  # proposals moved to the data config


def test_upgrade_is_idempotent_and_leaves_v2_keys_alone():
    v2_keys = ["online.byol_global.projector.0.weight", "target.byol_global.projector.0.weight"]
    once = upgrade_checkpoint(_v1("byol", ["online.projector.0.weight", "target.projector.0.weight"]))
    assert upgrade_checkpoint(once) is once
    assert list(upgrade_checkpoint(dict(once, version=1))["model"]) == v2_keys  # a v1 label on v2 keys
    assert list(upgrade_checkpoint(_v1("slotcon", ["objectives.slotcon_pixel.center"]))["model"]) == [
        "objectives.slotcon_pixel.center"]
    assert list(upgrade_checkpoint(_v1("unknown_method", ["online.projector.w"]))["model"]) == ["online.projector.w"]


def test_rename_table_is_pure_data():
    for method, renames in V1_TO_V2_RENAMES.items():
        assert all(isinstance(a, str) and isinstance(b, str) and a.endswith(".") and b.endswith(".")
                   for a, b in renames), method


def test_load_checkpoint_upgrades_only_up_to_the_layout_this_code_writes(tmp_path):
    torch.save(_v1("byol", ["online.projector.0.weight"]), tmp_path / "v1.pth")
    loaded = load_checkpoint(tmp_path / "v1.pth")
    expected = upgrade_checkpoint(_v1("byol", ["online.projector.0.weight"]), CHECKPOINT_VERSION)
    assert list(loaded["model"]) == list(expected["model"]) and loaded["version"] == max(1, CHECKPOINT_VERSION)


def test_a_future_version_is_refused(tmp_path):
    future = NEWEST_KNOWN_VERSION + 1
    torch.save({"format": "objssl-checkpoint", "version": future, "model": {}}, tmp_path / "new.pth")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "new.pth")
    assert f"version {future}" in str(info.value) and "new.pth" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_checkpoint_module_is_the_bottom_layer():
    tree = ast.parse(Path(ckpt_mod.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.split(".")[0] == "objssl"} <= {"objssl.errors", "objssl.fileio"}
