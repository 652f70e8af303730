"""UniVIP's terms: the three losses against hand-computed values, the instance crops, one backbone pass
of the instance crops per branch shared by both instance terms, and the terms alone and in compose."""

import math

import pytest
import torch

import objssl  # noqa: F401 - registers the built-in terms
from objssl.backbones import create_backbone
from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from objssl.errors import ConfigError
from objssl.methods import create_method
from objssl.methods.checks import _batch, check_objective
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BYOLGlobal, UniVIPInstanceOT, UniVIPSceneInstance
from objssl.objectives.univip_instance_ot import instance_ot_loss, scene_marginals
from objssl.objectives.univip_instances import PIXEL_MEAN, PIXEL_STD, crop_instances
from objssl.objectives.univip_scene_instance import scene_instance_loss

SMALL = dict(proj_hidden_dim=16, proj_dim=16, pred_hidden_dim=16, instance_size=32)


def test_scene_scene_loss_by_hand():
    # byol_global: (2 - 2cos(p1, z2)) + (2 - 2cos(p2, z1)); cos = 0 and 1 here
    p1, p2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    z1, z2 = torch.tensor([[0.0, 5.0]]), torch.tensor([[0.0, 1.0]])
    assert float(BYOLGlobal().criterion(p1, p2, z1, z2)) == pytest.approx(2.0)


def test_scene_instance_loss_by_hand():
    fused = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    s1 = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])   # cos 1, -1  -> 0, 4 -> mean 2
    s2 = torch.tensor([[0.0, 3.0], [0.0, 1.0]])     # cos 0, 1/sqrt2 -> 2, 2 - sqrt2
    expected = 2.0 + (2.0 + 2.0 - math.sqrt(2)) / 2
    assert float(scene_instance_loss(fused, [s1, s2])) == pytest.approx(expected, abs=1e-6)


def test_instance_ot_loss_by_hand():
    eye = torch.eye(2)[None]
    # uniform marginals, cost 1 - I: the plan puts x = e^10 / (2 (1 + e^10)) on each diagonal entry
    x = 0.5 * math.exp(10) / (1 + math.exp(10))
    ones = torch.ones(1, 2)
    assert float(instance_ot_loss(eye, eye, ones, ones, eps=0.1, iters=50)) == pytest.approx(-2 * x, abs=1e-6)
    # the scene rule: a_m = max(0, cos(o_m, mean target scene)) = [1, 0]; b_n = cos(t_n, mean online scene) = [.71, .71]
    a, b = scene_marginals(eye, eye, [torch.tensor([[1.0, 1.0]])] * 2, [torch.tensor([[1.0, 0.0]])] * 2)
    torch.testing.assert_close(a, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(b, torch.full((1, 2), 1 / math.sqrt(2)))
    # all of row 1's mass (1) split evenly over the columns: -(0.5 cos 0 + 0.5 cos 90deg) = -0.5
    assert float(instance_ot_loss(eye, eye, a, b)) == pytest.approx(-0.5, abs=1e-6)
    # scaling a or b changes nothing (normalised to equal mass); the plan is a constant weight
    assert float(instance_ot_loss(eye, eye, 7 * a, 0.1 * b)) == pytest.approx(-0.5, abs=1e-6)
    online = eye.clone().requires_grad_(True)
    instance_ot_loss(online, eye, a, b).backward()
    assert online.grad is not None and torch.isfinite(online.grad).all()


def test_instance_normalisation_is_the_views_one():
    assert PIXEL_MEAN == IMAGENET_MEAN and PIXEL_STD == IMAGENET_STD


def test_instance_crops_cut_the_boxes_resize_flip_and_normalise():
    S = 16
    canvas = torch.zeros(2, 3, S, S, dtype=torch.uint8)
    canvas[0, :, :8, :8] = 200                       # image 0: top-left quadrant bright
    canvas[1] = torch.arange(S, dtype=torch.uint8).mul(10).view(1, 1, S)  # image 1: ramp in x
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]], [[0.0, 0.0, 16.0, 16.0]] * 2])
    flips = torch.tensor([[False, False], [False, True]])
    crops = crop_instances(canvas, boxes, flips, size=8)
    assert crops.shape == (4, 3, 8, 8) and crops.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(crops[0], ((200 / 255 - mean) / std).expand(3, 8, 8))
    torch.testing.assert_close(crops[1], ((0 - mean) / std).expand(3, 8, 8))
    torch.testing.assert_close(crops[3], crops[2].flip(-1))
    assert (crops[2][0, 0].diff() > 0).all()          # unflipped ramp increases left to right


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    return calls


def test_instances_go_through_each_backbone_once_for_both_terms():
    torch.manual_seed(0)
    method = create_method("univip", create_backbone("test_resnet"), image_size=64, **SMALL)
    online, target = _count_calls(method.online["backbone"]), _count_calls(method.target["backbone"])
    _, batch = _batch(frozenset({"views", "boxes", "instances"}), 64)
    out = method(batch)
    B, K = batch["instances"]["boxes"].shape[:2]
    expected = [(B, 3, 64, 64)] * 2 + [(B * K, 3, 32, 32)]
    assert online == expected and target == expected  # 2 scenes + the instance crops, once per branch
    assert {"loss_byol_global", "loss_univip_scene_instance", "loss_univip_instance_ot"} <= set(out)
    torch.testing.assert_close(out["loss"], out["loss_byol_global"] + out["loss_univip_scene_instance"]
                               + out["loss_univip_instance_ot"])


@pytest.mark.parametrize("term", [UniVIPSceneInstance, UniVIPInstanceOT])
def test_each_term_alone_passes_the_checker_and_has_its_heads(term):
    logs = check_objective(term, instance_size=32)
    assert math.isfinite(logs["loss"])
    method = ObjectiveMethod(create_backbone("test_resnet"), [(term(**SMALL), 1.0)], image_size=64)
    assert set(method.online["univip"]) == {"projector", "predictor"} and set(method.target["univip"]) == {"projector"}
    has_fuser = "univip_scene_instance" in method.online and "fuser" in method.online["univip_scene_instance"]
    assert has_fuser == (term is UniVIPSceneInstance)


def test_the_terms_compose_with_univip_views_and_are_refused_without_instances():
    objectives = [{"name": "byol_global", "proj_hidden_dim": 16, "proj_dim": 16, "pred_hidden_dim": 16},
                  {"name": "univip_instance_ot", "weight": 0.5, **SMALL}]
    cfg = {"name": "compose", "views": "univip", "image_size": 64, "objectives": objectives}
    objssl.methods.Compose.check_config(cfg)
    torch.manual_seed(0)
    method = create_method("compose", create_backbone("test_resnet"), views="univip", image_size=64,
                           objectives=objectives)
    _, batch = _batch(frozenset({"views", "boxes", "instances"}), 64)
    out = method(batch)
    torch.testing.assert_close(out["loss"], out["loss_byol_global"] + 0.5 * out["loss_univip_instance_ot"])
    with pytest.raises(ConfigError, match="needs instances"):
        objssl.methods.Compose.check_config({**cfg, "views": "soco"})
    # the two UniVIP terms share their heads: a disagreement on a group argument is refused
    two = [{"name": "univip_scene_instance", "proj_dim": 16}, {"name": "univip_instance_ot", "proj_dim": 32}]
    with pytest.raises(ConfigError, match="share the 'univip' heads"):
        objssl.methods.Compose.check_config({**cfg, "objectives": two})


def test_bad_term_arguments_are_refused():
    with pytest.raises(ValueError, match="marginals"):
        UniVIPInstanceOT(marginals="raw")
    with pytest.raises(ValueError, match="eps"):
        UniVIPInstanceOT(eps=0.0)
    with pytest.raises(ValueError, match="k must be"):
        UniVIPSceneInstance(k=0)
