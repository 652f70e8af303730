"""SoCo (FPN), SoCo* and SoCo-C4 over timm CNNs: a step, the EMA target, padding, the CLI from proposals."""

import numpy as np
import pytest
import torch

from objssl import create_backbone, create_method
from objssl.cli import main
from objssl.data import demo_images, load_rgb
from objssl.data.collate import collate_views
from objssl.data.views import BoxAwareViews
from objssl.errors import ConfigError
from objssl.proposals import RandomSource

FPN_SMALL = dict(image_size=64, fpn_channels=16, box_fc_dim=32, proj_hidden_dim=32, proj_dim=16)
C4_SMALL = dict(image_size=64, proj_hidden_dim=32, proj_dim=16)


def _batch(method, n=4, pad="duplicate"):
    views = BoxAwareViews.from_preset(method.preset, size=method.image_size, pad=pad)
    torch.manual_seed(0)
    samples = []
    for p in demo_images()[:n]:
        img = load_rgb(p)
        samples.append(views(img, boxes=RandomSource(n=60, scale=(0.15, 0.6))(np.array(img)).boxes))
    return collate_views(samples)


@pytest.mark.parametrize("name, backbone", [
    ("soco", "test_resnet"), ("soco", "test_convnext"), ("soco_star", "test_resnet"),
    ("soco_c4", "test_resnet"), ("soco_c4", "test_convnext"),
])
def test_step_over_timm_cnns(name, backbone):
    torch.manual_seed(0)
    method = create_method(name, create_backbone(backbone), **(C4_SMALL if name == "soco_c4" else FPN_SMALL))
    batch = _batch(method)
    assert len(batch["views"]) == {"soco": 3, "soco_star": 4, "soco_c4": 2}[name]
    out = method(batch)
    assert torch.isfinite(out["loss"]) and out["positives_per_image"] >= 1
    out["loss"].backward()
    term = "soco_c4_boxes" if name == "soco_c4" else "soco_boxes"
    heads = ["projector", "predictor"] + (["box_head"] if name != "soco_c4" else [])
    trained = {"backbone": method.online["backbone"], **{h: method.online[term][h] for h in heads}}
    if name != "soco_c4":
        trained["neck"] = method.online["neck"]
    for part, module in trained.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), part
    assert "predictor" not in method.target[term] and all(p.grad is None for p in method.target.parameters())
    assert set(method.target) == {"backbone", term} | ({"neck"} if name != "soco_c4" else set())
    assert set(method.target[term]) == set(heads) - {"predictor"}


def test_padding_never_reaches_the_heads():
    torch.manual_seed(0)
    method = create_method("soco", create_backbone("test_resnet"), **FPN_SMALL)
    batch = _batch(method, pad="zeros")
    batch["box_mask"][:, 2:] = False  # half of the slots are padding
    rows = []
    method.online["soco_boxes"]["box_head"].register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    method(batch)
    used_per_view = int(batch["box_mask"].sum())
    assert rows and all(r <= used_per_view for r in rows)


def test_ema_covers_backbone_neck_and_box_head():
    torch.manual_seed(0)
    method = create_method("soco", create_backbone("test_resnet"), **FPN_SMALL)
    before = {k: v.clone() for k, v in method.target.state_dict().items()}
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    method(_batch(method))["loss"].backward()
    opt.step()
    m = method.update_target(0, 10)
    online = method.online.state_dict()
    for part in ("neck", "soco_boxes.box_head"):
        key = next(k for k in before if k.startswith(part) and k.endswith("weight"))
        torch.testing.assert_close(method.target.state_dict()[key], m * before[key] + (1 - m) * online[key])


def test_errors_name_the_problem():
    method = create_method("soco", create_backbone("test_resnet"), **FPN_SMALL)
    with pytest.raises(ConfigError, match="data.proposals=CACHE"):
        method.build_transform({"proposals": None})
    with pytest.raises(ConfigError, match="simple_pyramid"):
        create_method("soco", create_backbone("test_vit"), **FPN_SMALL)


@pytest.mark.parametrize("name", ["soco", "soco_star", "soco_c4"])
def test_cli_proposals_then_pretrain(name, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "soco_ss_cache"
    if not (cache / "meta.json").exists():
        pytest.importorskip("objssl_selective_search", reason="needs plugins/objssl-selective-search (objssl[ss])")
        assert main(["proposals", "--source", "selective_search", "--out", str(cache), "--max-side", "160",
                     "--no-progress"]) == 0
    out = tmp_path_factory.mktemp(name)
    small = C4_SMALL if name == "soco_c4" else FPN_SMALL
    args = ["pretrain", "--method", name, "--backbone", "test_resnet", "--max-steps", "2", "--batch-size", "4",
            "--workers", "0", "--out", str(out), f"data.proposals={cache}", "train.progress=false"]
    args += [f"method.{k}={v}" for k, v in small.items()]
    assert main(args) == 0
    assert (out / "checkpoints" / "step_00000002.pth").exists()
    assert "positives_per_image" in (out / "metrics.jsonl").read_text()


def test_box_sets_and_cutout_options_are_checked_and_reach_the_views():
    from objssl.methods import method_transform

    views = method_transform({"name": "soco", "image_size": 64, "cutout_p": 0.5}, {"proposals": None})
    assert views.box_sets == "per_pair" and [v.cutout_p for v in views.views] == [0.0, 0.5, 0.5]
    c4 = method_transform({"name": "soco_c4", "image_size": 64}, {"proposals": None})
    assert c4.views[0].box_jitter == 0.0 and c4.views[1].cutout_p == 0.5  # the official C4 data
    shared = method_transform({"name": "soco_star", "image_size": 64, "box_sets": "shared"}, {"proposals": None})
    assert shared.box_sets == "shared"
    for cfg, message in [({"box_sets": "both"}, r"method.box_sets='both': must be one of shared, per_pair"),
                         ({"cutout_p": 1.5}, r"method.cutout_p=1.5"),
                         ({"cutout_area": [0.3, 0.1]}, r"method.cutout_area=\[0.3, 0.1\]")]:
        with pytest.raises(ConfigError, match=message):
            method_transform({"name": "soco", **cfg}, {"proposals": None})
