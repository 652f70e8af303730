"""SlotCon parts against numbers from the official implementation.

Fixture ``tests/fixtures/slotcon_golden.json``: inputs and outputs from running CVMI-Lab/SlotCon
``models/slotcon.py`` (commit 30ff33d) aside, outside this repository — SemanticGrouping.forward,
SlotCon.self_distill / update_center / ctr_loss_filtered (predictor = identity, one gloo process)
and invaug; see the file's "provenance" field. Only the numbers are stored.
"""

import json
from pathlib import Path

import pytest
import torch

from objssl.heads import SemanticGrouping
from objssl.losses import PixelDistillLoss, present_slots, slot_infonce
from objssl.ops import align_to_overlap

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "slotcon_golden.json").read_text())
T = torch.tensor


def test_grouping_matches_official():
    g = GOLDEN["grouping"]
    x = T(g["x"])
    protos = T(g["prototypes"])
    grouping = SemanticGrouping(protos.shape[0], protos.shape[1], temp=g["temp"], eps=g["eps"])
    with torch.no_grad():
        grouping.prototypes.weight.copy_(protos)
    slots, dots = grouping(x)
    torch.testing.assert_close(dots, T(g["dots"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(slots, T(g["slots"]), atol=1e-5, rtol=0)


def test_pixel_loss_with_centering_and_center_update_match_official():
    p = GOLDEN["pixel"]
    q, k = T(p["q_dots"]), T(p["k_dots"])
    loss_fn = PixelDistillLoss(q.shape[1], p["student_temp"], p["teacher_temp"], p["center_momentum"])
    loss_fn.center.copy_(T(p["center"]))
    assert abs(loss_fn(q, k).item() - p["loss"]) <= 1e-5
    assert loss_fn.update_center(torch.cat([k, q]))
    torch.testing.assert_close(loss_fn.center, T(p["center_after"]), atol=1e-6, rtol=0)


def test_slot_loss_matches_official():
    s = GOLDEN["slot"]
    q_slots, k_slots = T(s["q_slots"]), T(s["k_slots"])
    present_q, present_k = present_slots(T(s["score_q"])), present_slots(T(s["score_k"]))
    both = present_q & present_k
    assert not both.all()  # the fixture has absent prototypes, so the filter is exercised
    index = torch.nonzero(both.reshape(-1)).reshape(-1)
    queries = q_slots.reshape(-1, q_slots.shape[-1])[index]
    loss = slot_infonce(queries, index, k_slots, present_k, temperature=s["tau"])
    assert abs(loss.item() - s["loss"]) <= 1e-5


def test_view_alignment_matches_official_invaug():
    a = GOLDEN["align"]
    maps = T(a["maps"])
    view = (224, 160)  # any view size: official coords are normalised, ours are in view pixels
    boxes = T(a["coords_normalized"]) * T([view[1], view[0], view[1], view[0]])
    out = align_to_overlap(maps, boxes, T(a["flips"]), view)
    torch.testing.assert_close(out, T(a["aligned"]), atol=1e-5, rtol=0)


def test_center_update_is_skipped_on_non_finite_scores():
    loss_fn = PixelDistillLoss(3)
    before = loss_fn.center.clone()
    bad = torch.zeros(2, 3, 2, 2)
    bad[0, 1, 0, 0] = float("nan")
    assert not loss_fn.update_center(bad)
    assert torch.equal(loss_fn.center, before)


def test_slot_loss_without_queries_is_zero_with_a_gradient():
    q = torch.randn(0, 4, requires_grad=True)
    loss = slot_infonce(q, torch.zeros(0, dtype=torch.long), torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()


def test_present_slots():
    scores = torch.zeros(1, 3, 2, 2)
    scores[0, 2] = 1.0
    scores[0, 0, 0, 0] = 5.0
    assert present_slots(scores).tolist() == [[True, False, True]]
    with pytest.raises(ValueError, match="must be present"):
        slot_infonce(torch.randn(1, 4), torch.tensor([1]), torch.randn(1, 3, 4), present_slots(scores))
