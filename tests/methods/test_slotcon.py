"""SlotCon over CNN and ViT backbones: a training step, the EMA teacher, masking, the CLI, export."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from objssl import create_backbone, create_method
from objssl.data import demo_images
from objssl.data.collate import collate_views
from objssl.data.dataset import ImageDataset

SMALL = dict(num_prototypes=8, proj_hidden_dim=32, proj_dim=16, image_size=64)


def _batch(method, n=4, seed=0):
    ds = ImageDataset(demo_images()[:n], method.build_transform({}))
    return collate_views([ds[(i, seed + i)] for i in range(n)])


@pytest.mark.parametrize("backbone", ["test_resnet", "test_convnext", "test_vit"])
def test_step_over_cnn_and_vit_backbones(backbone):
    torch.manual_seed(0)
    method = create_method("slotcon", create_backbone(backbone), **SMALL)
    batch = _batch(method)
    out = method(batch)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    assert 1 <= out["n_slots"].item() <= SMALL["num_prototypes"]
    assert out["invalid_overlaps"].item() == 0
    out["loss"].backward()
    parts = {"backbone": method.online["backbone"], "projector": method.online["slotcon"]["projector"],
             "grouping": method.online["slotcon"]["grouping"], "predictor": method.online["slotcon_slots"]["predictor"]}
    for part, module in parts.items():
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), part
    assert all(p.grad is None for p in method.target.parameters())
    assert set(method.target.keys()) == {"backbone", "slotcon"}  # no target predictor
    assert set(method.target["slotcon"]) == {"projector", "grouping"}


def test_teacher_prototypes_follow_by_ema_and_center_moves():
    torch.manual_seed(0)
    method = create_method("slotcon", create_backbone("test_resnet"), **SMALL)
    before = method.target["slotcon"]["grouping"].prototypes.weight.clone()
    center0 = method.objectives["slotcon_pixel"].center.clone()
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    method(_batch(method))["loss"].backward()
    opt.step()
    m = method.update_target(0, 10)
    online = method.online["slotcon"]["grouping"].prototypes.weight
    torch.testing.assert_close(method.target["slotcon"]["grouping"].prototypes.weight, m * before + (1 - m) * online.detach())
    assert not torch.equal(method.objectives["slotcon_pixel"].center, center0)


def test_samples_without_overlap_never_reach_roi_align():
    torch.manual_seed(0)
    method = create_method("slotcon", create_backbone("test_resnet"), **SMALL)
    batch = _batch(method)
    batch["overlap_valid"][1] = False
    batch["overlap"][1] = torch.tensor([50.0, 50.0, 10.0, 10.0])  # garbage, as SlotCon's fallback could give
    out = method(batch)
    assert out["invalid_overlaps"].item() == 1 and torch.isfinite(out["loss"])
    batch["overlap_valid"][:] = False
    out = method(batch)
    assert torch.isfinite(out["loss"]) and out["invalid_overlaps"].item() == 4


def test_non_finite_teacher_skips_the_center_update():
    torch.manual_seed(0)
    method = create_method("slotcon", create_backbone("test_resnet"), **SMALL)
    batch = _batch(method)
    batch["views"][0][0] = float("nan")
    center = method.objectives["slotcon_pixel"].center.clone()
    out = method(batch)
    assert not torch.isfinite(out["loss"])  # the trainer skips this step
    assert torch.equal(method.objectives["slotcon_pixel"].center, center)


def test_cli_pretrain_logs_slots_and_exports_to_timm(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "objssl.cli", "pretrain", "--method", "slotcon", "--backbone", "test_vit",
           "--max-steps", "3", "--batch-size", "4", "--workers", "0", "--out", str(out),
           "method.num_prototypes=8", "method.proj_hidden_dim=32", "method.proj_dim=16", "method.image_size=64",
           "train.progress=false", "train.log_every=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "n_slots" in (out / "log.txt").read_text()
    ckpt = out / "checkpoints" / "step_00000003.pth"
    proc = subprocess.run([sys.executable, "-m", "objssl.cli", "export", str(ckpt), "--to", "timm",
                           "-o", str(tmp_path / "vit.pth")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import timm

    model = timm.create_model("test_vit", num_classes=0)
    sd = torch.load(tmp_path / "vit.pth", weights_only=True)
    model.load_state_dict(sd)  # strict: every tensor has a place
    teacher = torch.load(ckpt, weights_only=True)["model"]
    for k, v in sd.items():
        assert torch.equal(v, teacher[f"target.backbone.model.{k}"])


WORKER = """
import sys, torch, torch.distributed as dist
from objssl.losses import slot_infonce
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
queries, index, keys, present = torch.load(sys.argv[1])
B, K = keys.shape[0] // world, keys.shape[1]
mine = (index // K >= rank * B) & (index // K < (rank + 1) * B)
q = queries[mine].clone().requires_grad_(True)
loss = slot_infonce(q, index[mine] - rank * B * K, keys[rank * B:(rank + 1) * B], present[rank * B:(rank + 1) * B])
loss.backward()
torch.save({"loss": loss.detach(), "n": int(mine.sum()), "grad": q.grad, "mine": mine}, f"{sys.argv[2]}.{rank}")
dist.destroy_process_group()
"""


def test_gathered_slot_loss_two_processes_equals_one(tmp_path):
    """Keys gathered from 2 gloo processes: the per-process losses, weighted by their query counts,
    equal the single-process loss on the whole batch, and so do the gradients."""
    from objssl.losses import slot_infonce

    torch.manual_seed(0)
    B, K, D = 4, 6, 8
    keys = torch.randn(B, K, D)
    present = torch.rand(B, K) > 0.3
    both = present & (torch.rand(B, K) > 0.2)
    index = torch.nonzero(both.reshape(-1)).reshape(-1)
    queries = torch.randn(len(index), D)
    q = queries.clone().requires_grad_(True)
    single = slot_infonce(q, index, keys, present)
    single.backward()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.save((queries, index, keys, present), tmp_path / "inputs.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(tmp_path / "worker.py"), str(tmp_path / "inputs.pt"), str(tmp_path / "r")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [torch.load(tmp_path / f"r.{r}", weights_only=True) for r in range(2)]
    total = sum(p["n"] for p in parts)
    combined = sum(p["loss"] * p["n"] for p in parts) / total
    assert abs(combined.item() - single.item()) < 1e-5
    grad = torch.zeros_like(queries)
    for p in parts:
        grad[p["mine"]] = p["grad"] * p["n"] / total
    torch.testing.assert_close(grad, q.grad, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_step_is_finite():
    """Scores and softmax run in float32 inside autocast; the loss stays finite in bf16."""
    torch.manual_seed(0)
    method = create_method("slotcon", create_backbone("test_resnet"), **SMALL)
    batch = _batch(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()


@pytest.mark.d2
@pytest.mark.mmseg
def test_slotcon_resnet_checkpoint_exports_to_detectron2_and_mmseg(tmp_path):
    pytest.importorskip("detectron2", reason="needs objssl[d2] (transfer/install.sh)")
    pytest.importorskip("mmseg", reason="needs objssl[mmseg] (transfer/install.sh)")
    from objssl.cli import main

    out = tmp_path / "run"
    assert main(["pretrain", "--method", "slotcon", "--backbone", "resnet18", "--max-steps", "1", "--batch-size", "2",
                 "--workers", "0", "--out", str(out), "method.num_prototypes=8", "method.proj_hidden_dim=32",
                 "method.proj_dim=16", "method.image_size=64", "train.progress=false"]) == 0
    ckpt = str(out / "checkpoints" / "step_00000001.pth")
    teacher = torch.load(ckpt, weights_only=True)["model"]
    assert main(["export", ckpt, "--to", "detectron2", "-o", str(tmp_path / "r18.pkl")]) == 0
    import pickle

    d2 = pickle.load(open(tmp_path / "r18.pkl", "rb"))["model"]
    # the stem conv is the teacher's, under detectron2's name
    assert np.array_equal(d2["backbone.bottom_up.stem.conv1.weight"], teacher["target.backbone.model.conv1.weight"].numpy())
    assert main(["export", ckpt, "--to", "mmseg", "-o", str(tmp_path / "r18_mmseg.pth")]) == 0
    mm = torch.load(tmp_path / "r18_mmseg.pth", weights_only=True)
    mm = mm.get("state_dict", mm)
    assert any(torch.equal(v, teacher["target.backbone.model.conv1.weight"]) for v in mm.values())
