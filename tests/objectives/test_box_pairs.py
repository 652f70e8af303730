"""The SoCo box terms on the per-pair layout: pair p's view-1 boxes meet view p + 1's."""

import numpy as np
import pytest
import torch

from objssl import create_backbone, create_method
from objssl.data import demo_images, load_rgb
from objssl.data.collate import collate_views
from objssl.data.views import BoxAwareViews
from objssl.proposals import RandomSource

SMALL = {"soco": dict(image_size=64, fpn_channels=16, box_fc_dim=32, proj_hidden_dim=32, proj_dim=16),
         "soco_star": dict(image_size=64, fpn_channels=16, box_fc_dim=32, proj_hidden_dim=32, proj_dim=16),
         "soco_c4": dict(image_size=64, proj_hidden_dim=32, proj_dim=16)}


def _shared_batch(name):
    views = BoxAwareViews.from_preset(name, size=64, box_sets="shared")
    torch.manual_seed(0)
    samples = []
    for p in demo_images()[:3]:
        img = load_rgb(p)
        samples.append(views(img, boxes=RandomSource(n=60, scale=(0.15, 0.6))(np.array(img)).boxes))
    return collate_views(samples)


def _as_pairs(batch):
    """The same boxes in the per-pair layout: every pair carries the shared set."""
    P = len(batch["views"]) - 1
    out = dict(batch)
    out["boxes"] = [batch["boxes"][0][:, None].repeat(1, P, 1, 1)] + list(batch["boxes"][1:])
    out["box_mask"] = batch["box_mask"][:, None].repeat(1, P, 1)
    out["box_ids"] = batch["box_ids"][:, None].repeat(1, P, 1)
    return out


@pytest.mark.parametrize("name", ["soco", "soco_star", "soco_c4"])
def test_per_pair_with_equal_sets_is_the_shared_loss(name):
    torch.manual_seed(0)
    method = create_method(name, create_backbone("test_resnet"), **SMALL[name])
    batch = _shared_batch(name)
    shared = method(batch)
    pairs = method(_as_pairs(batch))
    torch.testing.assert_close(pairs["loss"], shared["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pairs["positives_per_image"], shared["positives_per_image"])
    if name == "soco_c4":
        return
    # other view-1 boxes for the 1-3 pair change the loss, and leave the 1-2 pair's view-1 boxes alone
    other = _as_pairs(batch)
    w = batch["views"][0].shape[-1]
    b = other["boxes"][0][:, 1]
    other["boxes"][0][:, 1] = torch.stack([w - b[..., 2], b[..., 1], w - b[..., 0], b[..., 3]], dim=-1)
    rois = []
    hook = method.online["soco_boxes"]["box_head"].register_forward_hook(lambda m, i, o: rois.append(i[0].detach()))
    out = method(other)
    hook.remove()
    assert not torch.allclose(out["loss"], shared["loss"])
    torch.testing.assert_close(out["positives_per_image"], shared["positives_per_image"])
    pairs_rois = []
    head = method.online["soco_boxes"]["box_head"]
    hook = head.register_forward_hook(lambda m, i, o: pairs_rois.append(i[0].detach()))
    method(_as_pairs(batch))
    hook.remove()
    assert torch.equal(rois[0], pairs_rois[0]) and not torch.equal(rois[2], pairs_rois[2])  # online: v1 p0, v2, v1 p1


def test_per_pair_step_from_the_method_views():
    torch.manual_seed(0)
    method = create_method("soco", create_backbone("test_resnet"), **SMALL["soco"])
    views = method.transform_for(method.hparams)
    assert views.box_sets == "per_pair" and views.views[1].cutout_p == 0.0
    samples = []
    for p in demo_images()[:2]:
        img = load_rgb(p)
        samples.append(views(img, boxes=RandomSource(n=60, scale=(0.15, 0.6))(np.array(img)).boxes))
    out = method(collate_views(samples))
    assert torch.isfinite(out["loss"]) and out["positives_per_image"] >= 1
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.online["soco_boxes"].parameters())
