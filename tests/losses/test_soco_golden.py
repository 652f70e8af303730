"""SoCo's level assignment, correspondence matrix and loss against numbers from the official code.

Fixture ``tests/fixtures/soco_golden.json``: inputs and outputs of hologerry/SoCo (commit 2be1229)
``assign_bboxs_to_feature_map``, ``get_aware_correspondence_matrix`` and ``regression_loss_bboxs_aware``,
run aside (see its "provenance" field). SoCo's boxes are inclusive pixel boxes (``x2 - x1 + 1`` wide);
objssl's are ``xyxy`` with ``x2 - x1`` the width, so ``x2`` differs by one.
"""

import json
from pathlib import Path

import torch

from objssl.heads import assign_fpn_levels
from objssl.losses import MaskedRegressionLoss, correspondence_matrix, masked_regression_loss

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "soco_golden.json").read_text())


def test_level_assignment_matches_official():
    g = GOLDEN["levels"]
    inclusive = torch.tensor(g["boxes_inclusive"])[:, :4]
    boxes = inclusive + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert assign_fpn_levels(boxes, g["aware_range"][:4]).tolist() == g["levels"]


def _levels(sizes):
    s = torch.tensor(sizes)
    boxes = torch.stack([torch.zeros_like(s), torch.zeros_like(s), s, s], dim=-1)
    return assign_fpn_levels(boxes)


def _at_level(all_levels, levels):
    """Pick each box's vector on its own level from SoCo's level-major [N, P*L, C] layout."""
    x = torch.tensor(all_levels)
    N, PL, C = x.shape
    L = levels.shape[1]
    return x.view(N, PL // L, L, C)[torch.arange(N)[:, None], levels, torch.arange(L)[None, :]]


def test_correspondence_and_loss_match_official():
    g = GOLDEN["loss"]
    ids_a, ids_b = torch.tensor(g["ids_a"]).long(), torch.tensor(g["ids_b"]).long()
    lv_a, lv_b = _levels(g["sizes_a"]), _levels(g["sizes_b"])
    used_a, used_b = lv_a >= 0, lv_b >= 0
    corr = correspondence_matrix(ids_a, used_a, ids_b, used_b)
    assert corr.sum((1, 2)).tolist() == g["corr_positives"]  # duplicates add positives, as in SoCo
    p_a, z_a = _at_level(g["q_a"], lv_a), _at_level(g["z_a"], lv_a)
    p_b, z_b = _at_level(g["q_b"], lv_b), _at_level(g["z_b"], lv_b)
    assert abs(masked_regression_loss(p_a, z_b, corr).item() - g["loss_a_to_b"]) < 1e-6
    assert abs(masked_regression_loss(p_b, z_a, corr.transpose(1, 2)).item() - g["loss_b_to_a"]) < 1e-6
    total = MaskedRegressionLoss()(p_a, z_a, p_b, z_b, corr)
    assert abs(total.item() - (g["loss_a_to_b"] + g["loss_b_to_a"])) < 1e-6


def test_images_without_positives_add_zero_and_padding_never_matches():
    ids = torch.tensor([[1, 2]])
    valid = torch.tensor([[True, False]])
    corr = correspondence_matrix(ids, valid, ids, valid)
    assert corr.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    none = torch.zeros(1, 2, 2)
    assert masked_regression_loss(torch.randn(1, 2, 4), torch.randn(1, 2, 4), none).item() == 0.0
    # with one positive the loss is -2 cos of that pair: BYOL's 2 - 2cos minus 2
    p, z = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    cos = torch.nn.functional.cosine_similarity(p[0, 0], z[0, 0], dim=0)
    assert abs(masked_regression_loss(p, z, corr).item() - (-2 * cos.item() / (1 + 1e-6))) < 1e-6
