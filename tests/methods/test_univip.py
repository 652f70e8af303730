"""UniVIP: every parameter built eagerly and trained in one step, per-sample colour of the instance
canvas, a bounded scene search on tiny images, counted fallbacks in the logs, and the CLI
(proposals → pretrain → export)."""

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import objssl  # noqa: F401 - registers the built-in methods
from objssl.backbones import create_backbone
from objssl.cli import main
from objssl.data import demo_images, load_rgb
from objssl.data.collate import collate_views
from objssl.data.transforms import ViewAugmentation
from objssl.data.views import BoxAwareViews
from objssl.methods import create_method, method_transform
from objssl.proposals import RandomSource

SMALL = dict(proj_hidden_dim=16, proj_dim=16, pred_hidden_dim=16, image_size=64, instance_size=32)


def _samples(transform, images, seed0=0):
    out = []
    for i, img in enumerate(images):
        torch.manual_seed(seed0 + i)
        out.append(transform(img, {"path": f"img{i}"}, boxes=RandomSource(n=40, scale=(0.15, 0.6))(np.array(img)).boxes))
    return out


def test_every_parameter_exists_up_front_and_gets_a_gradient_in_one_step():
    torch.manual_seed(0)
    method = create_method("univip", create_backbone("test_resnet"), **SMALL)
    assert not any(isinstance(m, torch.nn.modules.lazy.LazyModuleMixin) for m in method.modules())
    names = [n for n, _ in method.named_parameters()]
    for prefix in ("online.byol_global.projector.", "online.byol_global.predictor.", "online.univip.projector.",
                   "online.univip.predictor.", "online.univip_scene_instance.fuser.", "target.byol_global.projector.",
                   "target.univip.projector."):
        assert any(n.startswith(prefix) for n in names), prefix
    assert not any(n.startswith(("target.univip.predictor", "target.univip_scene_instance")) for n in names)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    transform = method_transform({"name": "univip", **SMALL})
    batch = collate_views(_samples(transform, [load_rgb(p) for p in demo_images()[:4]]))
    out = method(batch)
    assert [n for n, _ in method.named_parameters()] == names  # nothing created by the forward
    out["loss"].backward()
    for name, p in method.online.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"online.{name} got no gradient"
    for group in ("backbone", "byol_global", "univip", "univip_scene_instance"):
        for head, module in method.online[group].named_children():
            assert any(p.grad.abs().sum() > 0 for p in module.parameters()), f"online.{group}.{head} has zero gradient"
    assert all(p.grad is None for p in method.target.parameters())
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in method.online.parameters()} <= trained
    optimizer.step()


def test_instance_colour_is_drawn_per_sample():
    img = load_rgb(demo_images()[0])
    transform = method_transform({"name": "univip", **SMALL})
    batch = collate_views(_samples(transform, [img, img]))
    canvas = batch["instances"]["canvas"]
    assert canvas.dtype == torch.uint8 and canvas.shape[0] == 2
    assert not torch.equal(canvas[0], canvas[1])  # same image, two samples of one batch: two colour draws
    no_colour = ViewAugmentation(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    plain = BoxAwareViews.from_preset("univip", size=64, instance_color=no_colour)
    a, b = _samples(plain, [img, img])
    assert torch.equal(a["instances"]["canvas"], b["instances"]["canvas"])  # so the difference above is the colour
    H, W = a["image_size"].tolist()
    S = a["instances"]["canvas"].shape[-1]
    scale = torch.tensor([S / W, S / H, S / W, S / H])
    torch.testing.assert_close(a["instances"]["boxes"], a["boxes_image"] * scale)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hw", [(20, 30), (50, 70), (63, 200)])
def test_scene_search_is_bounded_on_small_images(hw):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
    transform = method_transform({"name": "univip", **SMALL})
    torch.manual_seed(0)
    samples = [transform(img, {"path": "tiny"}, boxes=RandomSource(n=10)(np.array(img)).boxes) for _ in range(4)]
    batch = collate_views(samples)
    boxes = batch["instances"]["boxes"]
    assert ((boxes[..., 2:] - boxes[..., :2]) > 0).all() and batch["box_mask"].all()
    assert batch["counters"]["views/tries_exhausted"] == 4  # no overlap has 64-px sides: every sample fell back
    torch.manual_seed(0)
    method = create_method("univip", create_backbone("test_resnet"), **SMALL)
    out = method(batch)
    assert all(torch.isfinite(v) for v in out.values())


def test_cli_proposals_pretrain_export(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    assert main(["proposals", "--source", "random", "--out", str(cache), "--no-progress"]) == 0
    args = ["pretrain", "--method", "univip", "--backbone", "test_resnet", "--max-steps", "2", "--batch-size", "4",
            "--workers", "0", "--out", str(out), f"data.proposals={cache}", "train.progress=false",
            "train.log_every=1"]
    args += [f"method.{k}={v}" for k, v in SMALL.items()]
    assert main(args) == 0
    ckpt = out / "checkpoints" / "step_00000002.pth"
    assert ckpt.exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = records[-1]
    assert {"loss_byol_global", "loss_univip_scene_instance", "loss_univip_instance_ot"} <= set(last)
    assert "views/fallback_random" in last  # the counted fallbacks reach the logs
    assert main(["export", str(ckpt), "--to", "timm", "-o", str(tmp_path / "b.pth")]) == 0
    model = timm.create_model("test_resnet", num_classes=0)
    model.load_state_dict(torch.load(tmp_path / "b.pth", weights_only=True), strict=True)


def test_bad_ot_settings_are_refused_before_building():
    from objssl.errors import ConfigError
    from objssl.registry import METHODS

    with pytest.raises(ConfigError, match="method.ot_marginals='raw': must be one of scene, uniform"):
        METHODS.get("univip").check_config({"name": "univip", "ot_marginals": "raw"})
    with pytest.raises(ConfigError, match="method.ot_eps=0"):
        METHODS.get("univip").check_config({"name": "univip", "ot_eps": 0.0})
