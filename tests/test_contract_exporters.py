"""Every registered exporter, on real checkpoints: export → read back → the tensors are the checkpoint's.

The checkpoints are trained for 2 steps (BYOL and SoCo on a 0.3M-parameter timm ResNet, the
bundled demo photos). A version-1 copy of the SoCo one (the key layout objssl wrote before objective
terms: ``target.box_head.*``) checks that older files reach detectron2 through the layout upgrade.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from objssl.checkpoint import save_checkpoint, upgrade_checkpoint
from objssl.cli import main
from objssl.export.checks import check_exporter, read_exported_tensors
from objssl.registry import EXPORTERS

import objssl  # noqa: F401 - registers the built-in exporters

SOCO_SMALL = ["method.image_size=64", "method.fpn_channels=16", "method.box_fc_dim=32",
              "method.proj_hidden_dim=32", "method.proj_dim=16", "train.progress=false"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("contract")
    byol = out / "byol"
    assert main(["pretrain", "--backbone", "test_resnet", "--max-steps", "2", "--batch-size", "4", "--workers", "0",
                 "--out", str(byol), "method.image_size=48", "method.proj_hidden_dim=32",
                 "method.pred_hidden_dim=32", "method.proj_dim=16", "train.progress=false"]) == 0
    soco = out / "soco"
    assert main(["proposals", "--source", "random", "--out", str(out / "cache"), "--no-progress"]) == 0
    assert main(["pretrain", "--method", "soco", "--backbone", "test_resnet", "--max-steps", "2", "--batch-size", "4",
                 "--workers", "0", "--out", str(soco), f"data.proposals={out / 'cache'}", *SOCO_SMALL]) == 0
    return {"byol": str(byol / "checkpoints" / "step_00000002.pth"),
            "soco": str(soco / "checkpoints" / "step_00000002.pth")}


@pytest.mark.parametrize("method", ["byol", "soco"])
@pytest.mark.parametrize("name", EXPORTERS.names())
def test_every_exporter_round_trips(name, method, checkpoints, tmp_path):
    reports = check_exporter(name, checkpoints[method], tmp_path)
    assert set(reports) == {"teacher", "student"}
    teacher = read_exported_tensors(str(tmp_path / f"{name}_teacher.pth"))
    student = read_exported_tensors(str(tmp_path / f"{name}_student.pth"))
    assert teacher.keys() == student.keys()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)  # the EMA teacher is not the student


@pytest.mark.parametrize("name, suffix", [("timm", ".safetensors"), ("detectron2", ".pkl")])
def test_other_file_formats_round_trip(name, suffix, checkpoints, tmp_path):
    check_exporter(name, checkpoints["byol"], tmp_path, suffix=suffix)


def test_detectron2_c4_layout_round_trips(checkpoints, tmp_path):
    check_exporter("detectron2", checkpoints["byol"], tmp_path, layout="c4", norm="FrozenBN")


def _soco_fpn_and_box_head(ckpt: dict, branch: str) -> dict:
    model = upgrade_checkpoint(ckpt, 2)["model"]
    return {k: v for k, v in model.items()
            if k.startswith((f"{branch}.neck.", f"{branch}.soco_boxes.box_head."))}


def _as_version1(path: str, out: str) -> str:
    """The SoCo checkpoint at ``path`` as objssl wrote it before objective terms: heads directly under the branch."""
    v2 = torch.load(path, weights_only=True)
    v1 = {**v2, "version": 1, "model": {k.replace(".soco_boxes.", ".", 1): v for k, v in v2["model"].items()}}
    torch.save(v1, out)
    return out


def test_soco_v1_checkpoint_exports_fpn_and_box_head_to_detectron2(checkpoints, tmp_path):
    v1_path = _as_version1(checkpoints["soco"], str(tmp_path / "soco_v1.pth"))
    raw = torch.load(v1_path, weights_only=True)
    assert raw["version"] == 1 and any(k.startswith("target.box_head.") for k in raw["model"])
    check_exporter("detectron2", v1_path, tmp_path, suffix=".pkl")
    exported = pickle.load(open(tmp_path / "detectron2_teacher.pkl", "rb"))["model"]
    parts = _soco_fpn_and_box_head(raw, "target")
    assert len([k for k in exported if not k.startswith("backbone.bottom_up.")]) == len(parts) > 0
    assert torch.equal(torch.from_numpy(exported["backbone.fpn_lateral2.weight"]),
                       raw["model"]["target.neck.fpn.inner_blocks.0.0.weight"])
    assert torch.equal(torch.from_numpy(exported["roi_heads.box_head.fc1.weight"]),
                       raw["model"]["target.box_head.fc.weight"])


@pytest.mark.parametrize("objectives, has_parts", [
    ([{"name": "soco_boxes"}, {"name": "byol_global"}], True),
    (["soco_boxes"], True),
    ({"soco_boxes": {"weight": 1.0}}, True),
    ([{"name": "byol_global"}], False),
])
def test_compose_exports_detector_parts_only_with_a_soco_boxes_term(objectives, has_parts, checkpoints, tmp_path):
    v2 = upgrade_checkpoint(torch.load(checkpoints["soco"], weights_only=True), 2)
    state = {k: v for k, v in v2.items() if k not in ("format", "version")}
    state["method"] = "compose"
    state["config"] = {**state["config"], "method": {"name": "compose", "objectives": objectives}}
    if not has_parts:
        state["model"] = {k: v for k, v in state["model"].items() if ".soco_boxes." not in k}
    path = save_checkpoint(state, str(tmp_path / "ckpt"), step=1, keep_last=1)
    reports = check_exporter("detectron2", path, tmp_path, which=("teacher",))
    exported = read_exported_tensors(str(tmp_path / "detectron2_teacher.pth"))
    fpn = [k for k in exported if k.startswith(("backbone.fpn_", "roi_heads.box_head."))]
    if has_parts:
        assert len(fpn) == len(_soco_fpn_and_box_head(v2, "target"))
        assert any("compose parts mapped" in n for n in reports["teacher"].notes)
    else:
        assert fpn == []


def test_check_exporter_catches_an_exporter_that_alters_weights(checkpoints, tmp_path, monkeypatch):
    from objssl.export.timm import export_timm

    def scaling_exporter(ckpt, out_path, *, which="teacher"):
        report = export_timm(ckpt, out_path, which=which)
        sd = torch.load(out_path, weights_only=True)
        torch.save({k: v * 2 if v.is_floating_point() else v for k, v in sd.items()}, out_path)
        return report

    monkeypatch.setitem(EXPORTERS._objs, "scaling", scaling_exporter)  # registered for this test only
    with pytest.raises(AssertionError, match="not taken unchanged"):
        check_exporter("scaling", checkpoints["byol"], tmp_path)
