"""Every registered objective term passes check_objective; the feature cache runs each backbone once."""

import pytest
import torch

import objssl  # noqa: F401 - registers the built-in terms
from objssl.backbones import create_backbone
from objssl.methods.checks import _batch, check_objective
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BATCH_NEEDS, SlotConSlots, SoCoBoxes, SoCoC4Boxes
from objssl.registry import OBJECTIVES


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_term_passes_the_checker(name):
    cls = OBJECTIVES.get(name)
    assert cls.name == name and set(cls.needs) <= BATCH_NEEDS and cls.min_views >= 1
    logs = check_objective(cls)
    assert "loss" in logs


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(tuple(getattr(i[0], "shape", ()))))
    return calls


def test_each_view_goes_through_each_backbone_once_for_all_terms():
    torch.manual_seed(0)
    terms = [(SoCoBoxes(fpn_channels=16, box_fc_dim=16, proj_hidden_dim=16, proj_dim=16), 1.0),
             (SlotConSlots(num_prototypes=8, proj_hidden_dim=16, proj_dim=16), 0.5)]
    method = ObjectiveMethod(create_backbone("test_resnet"), terms, image_size=64)
    online, target = _count_calls(method.online["backbone"]), _count_calls(method.target["backbone"])
    neck = _count_calls(method.online["neck"].fpn)
    _, batch = _batch(frozenset({"views", "boxes", "overlap"}), 64)
    out = method(batch)
    assert len(batch["views"]) == 3
    assert len(online) == len(target) == len(neck) == 3  # one pass per view and branch, shared by both terms
    assert {"loss_soco_boxes", "loss_slot", "n_slots", "positives_per_image"} <= set(out)
    torch.testing.assert_close(out["loss"], out["loss_soco_boxes"] + 0.5 * out["loss_slot"])


def test_soco_c4_alone_stops_the_image_at_c4():
    torch.manual_seed(0)
    backbone = create_backbone("test_resnet")
    method = ObjectiveMethod(backbone, [(SoCoC4Boxes(proj_hidden_dim=16, proj_dim=16), 1.0)], image_size=64)
    res5 = method.online["backbone"].module_of(method.objectives["soco_c4_boxes"].res5_name)
    inputs = _count_calls(res5)
    _, batch = _batch(frozenset({"views", "boxes"}), 64)
    method(batch)
    # the last stage only ever sees 14x14 RoI features, never a whole image's c4 map
    assert inputs and all(shape[-2:] == (14, 14) for shape in inputs)
    assert method.maps == ["c4"] and not method.pooled


def test_backbone_maps_only_equal_the_full_forward():
    torch.manual_seed(0)
    bb = create_backbone("test_resnet").eval()
    x = torch.randn(2, 3, 64, 64)
    full = bb(x)
    part = bb(x, maps=["c3", "c4"], pooled=False)
    assert part.pooled is None and set(part.maps) == {"c3", "c4"}
    for name in part.maps:
        assert torch.equal(part.maps[name], full.maps[name])
    assert [f.module for f in bb.feature_info] == ["layer1", "layer2", "layer3", "layer4"]


def test_list_objectives_prints_what_each_term_needs(capsys):
    from objssl.cli import main

    assert main(["list", "objectives"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(OBJECTIVES.names()) <= set(lines)
    assert "needs boxes, views" in lines["soco_boxes"] and "FPN" in lines["soco_boxes"]
    assert "needs overlap, views" in lines["slotcon_pixel"]
    assert "pooled vector" in lines["byol_global"]
