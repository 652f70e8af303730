"""Box filters: each rule of SoCo, ORL and UniVIP (docs/methods.md#proposal-filters) on boxes built to sit on its edges."""

import torch

from objssl.proposals import filters as F


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_min_size_is_inclusive_and_per_side():
    boxes = t([[0, 0, 32, 32], [0, 0, 31.9, 100], [0, 0, 100, 31], [5, 5, 50, 60]])
    assert F.min_size(boxes, 32, 32).tolist() == [0, 3]


def test_aspect_range_both_orientations_and_degenerate():
    boxes = t([[0, 0, 30, 10], [0, 0, 10, 30], [0, 0, 31, 10], [0, 0, 10, 31], [0, 0, 0, 10]])
    assert F.aspect_range(boxes, 3.0).tolist() == [0, 1]


def test_relative_size_band():
    # image 100x100: sqrt(wh)/100 must be in [0.3, 0.8]
    boxes = t([[0, 0, 30, 30], [0, 0, 29, 29], [0, 0, 80, 80], [0, 0, 81, 81], [0, 0, 90, 40]])
    assert F.relative_size(boxes, (100, 100), 0.3, 0.8).tolist() == [0, 2, 4]


def test_iou_dedup_compares_with_kept_boxes_only():
    # b1 duplicates b0 and b3 duplicates b2 (IoU > 0.5): dropped
    b0 = [0, 0, 10, 10]
    b1 = [0, 0, 9, 9]  # IoU(b0, b1) = 0.81
    b2 = [20, 20, 30, 30]  # disjoint
    b3 = [21, 20, 31, 30]  # IoU with b2 = 90/110 ≈ 0.82
    keep = F.iou_dedup(t([b0, b1, b2, b3]), 0.5)
    assert keep.tolist() == [0, 2]
    # a suppressed box never suppresses: chain a-b-c where only a-b and b-c overlap
    a, b, c = [0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]  # IoU(a,b)=0.54, IoU(b,c)=0.54, IoU(a,c)=0.25
    assert F.iou_dedup(t([a, b, c]), 0.5).tolist() == [0, 2]


def test_max_count_keeps_ranking():
    boxes = torch.rand(10, 4)
    assert F.max_count(boxes, 3).tolist() == [0, 1, 2]
    assert F.max_count(boxes, 50).tolist() == list(range(10))


def test_soco_filter_rules_and_fallback_chain():
    W, H = 200, 100  # sqrt(WH) = 141.4: relative band is side 42.4 .. 113.1
    good = [0, 0, 60, 60]
    too_small = [0, 0, 31, 31]
    too_thin = [0, 0, 150, 40]  # aspect 3.75
    too_big = [0, 0, 200, 100]
    out = F.soco_filter(t([too_small, good, too_thin, too_big]), (W, H))
    assert out.tolist() == [good]
    # nothing passes the full rule -> ratio-3 with the 32-px minimum (SoCo's filter_ratio): the whole
    # image box, not the 31-px one
    out = F.soco_filter(t([too_small, too_thin, too_big]), (W, H))
    assert out.tolist() == [too_big]
    # nothing passes the ratio rule either -> w, h >= 32 only
    out = F.soco_filter(t([too_thin, [0, 0, 10, 40]]), (W, H))
    assert out.tolist() == [too_thin]
    # nothing at all -> the whole image
    assert F.soco_filter(torch.zeros(0, 4), (W, H)).tolist() == [[0, 0, 200, 100]]


def test_orl_filter_order_dedup_topn_and_fallback():
    boxes = t([[0, 0, 100, 100], [0, 0, 95, 95], [0, 0, 120, 97], [100, 100, 300, 300], [0, 0, 90, 200]])
    # [1] too small (95); [2] IoU with [0] = 10000/11640 > 0.5; [4] w 90 < 96
    assert F.orl_filter(boxes, (400, 400)).tolist() == [[0, 0, 100, 100], [100, 100, 300, 300]]
    assert len(F.orl_filter(boxes, (400, 400), top_n=1)) == 1
    # none survive -> the first raw box
    assert F.orl_filter(t([[0, 0, 10, 10], [5, 5, 20, 20]]), (400, 400)).tolist() == [[0, 0, 10, 10]]


def test_univip_filter():
    boxes = t([[0, 0, 64, 64], [0, 0, 63, 200], [0, 0, 64, 66], [100, 0, 300, 65]])
    # [1] too narrow, [2] IoU with [0] = 0.97, [3] aspect 200/65 > 3
    assert F.univip_filter(boxes, (400, 400)).tolist() == [[0, 0, 64, 64]]
    assert F.univip_filter(torch.zeros(0, 4), (50, 40)).tolist() == [[0, 0, 50, 40]]


def test_filter_presets_by_name():
    import pytest

    assert F.filter_preset("orl") is F.orl_filter and F.filter_preset("soco") is F.soco_filter
    with pytest.raises(ValueError, match="unknown box filter 'orll'; known: orl, soco, univip"):
        F.filter_preset("orll")
