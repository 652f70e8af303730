"""The pieces of box-aware sampling on their own: areas, visibility, jitter, crop rules, box selection."""

import torch
from torchvision.ops import box_area

from objssl.data.views.box_geometry import clamped_area, intersection_area, jitter_boxes, visible_in_crops
from objssl.data.views.box_selection import PAD_ID, WHOLE_REGION_ID, select_boxes
from objssl.data.views.crops import overlap_ok


def test_inverted_boxes_have_no_area():
    inverted = torch.tensor([[10.0, 10.0, 4.0, 2.0]])
    assert box_area(inverted).item() > 0  # why box_area is not used for user boxes
    assert clamped_area(inverted).item() == 0
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([[2.0, 2.0, 6.0, 6.0], [5.0, 5.0, 8.0, 8.0]])
    assert intersection_area(a.expand_as(b), b).tolist() == [4.0, 0.0]


def test_visibility_is_the_fraction_inside_every_crop():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0], [8.0, 8.0, 2.0, 2.0]])
    crops = torch.tensor([[5.0, 0.0, 100.0, 100.0], [0.0, 0.0, 45.0, 100.0]])  # box 0 half inside crop 0
    assert visible_in_crops(boxes, crops, [0], 0.0).tolist() == [True, True, False]
    assert visible_in_crops(boxes, crops, [0], 0.5).tolist() == [True, True, False]
    assert visible_in_crops(boxes, crops, [0], 0.6).tolist() == [False, True, False]
    assert visible_in_crops(boxes, crops, [0, 1], 0.6).tolist() == [False, False, False]
    assert visible_in_crops(boxes, crops, [1], 1.0).tolist() == [True, False, False]
    assert visible_in_crops(torch.zeros(0, 4), crops, [0], 0.0).shape == (0,)


def test_jitter_moves_boxes_inside_the_image_with_probability_p():
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [50.0, 40.0, 100.0, 80.0]] * 8)
    torch.manual_seed(0)
    assert torch.equal(jitter_boxes(boxes, 0.1, 0.0, (80, 100)), boxes)
    assert jitter_boxes(boxes, 0.0, 1.0, (80, 100)) is boxes
    out = jitter_boxes(boxes, 0.1, 1.0, (80, 100))
    assert not torch.equal(out, boxes)
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= 100).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= 80).all()
    # corners move by at most r * side (plus the size change for x2, y2), before clipping
    wh = boxes[:, 2:] - boxes[:, :2]
    assert ((out[:, :2] - boxes[:, :2]).abs() <= 0.1 * wh + 1e-5).all()
    assert ((out[:, 2:] - boxes[:, 2:]).abs() <= 0.2 * wh + 1e-5).all()


def test_overlap_rule_of_the_first_two_crops():
    crops = torch.tensor([[0.0, 0.0, 100.0, 100.0], [50.0, 80.0, 150.0, 180.0]])  # overlap 50 x 20
    assert overlap_ok(crops, 0.0, 0.0)
    assert overlap_ok(crops, 0.1, 20.0) and not overlap_ok(crops, 0.11, 0.0)  # 1000 / 10000 of crop 1
    assert not overlap_ok(crops, 0.0, 21.0)
    apart = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert not overlap_ok(apart, 0.01, 0.0) and overlap_ok(apart[:1], 0.5, 64.0)


def _select(props, visible, crops, **kw):
    events = []
    args = dict(k=3, min_boxes=1, pad="zeros", fallback="whole", fallback_min_size=4.0)
    args.update(kw)
    out = select_boxes(props, visible, crops, [0, 1], on_event=lambda key, msg: events.append(key), **args)
    return (*out, events)


def test_selection_pads_falls_back_and_counts():
    props = torch.tensor([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 5.0, 5.0]])
    crops = torch.tensor([[0.0, 0.0, 60.0, 60.0], [8.0, 8.0, 80.0, 80.0]])
    boxes, ids, mask, events = _select(props, torch.tensor([True, False]), crops)
    assert ids.tolist() == [0, PAD_ID, PAD_ID] and mask.tolist() == [True, False, False]
    assert torch.equal(boxes[0], props[0]) and not boxes[1:].any() and events == []
    boxes, ids, mask, events = _select(props, torch.tensor([True, False]), crops, pad="duplicate")
    assert ids.tolist() == [0, 0, 0] and mask.all() and torch.equal(boxes, props[[0, 0, 0]])
    # nothing visible: the shared region of the carriers is the box
    boxes, ids, mask, events = _select(props, torch.tensor([False, False]), crops)
    assert ids.tolist() == [WHOLE_REGION_ID, PAD_ID, PAD_ID] and events == ["fallback_whole"]
    assert boxes[0].tolist() == [8.0, 8.0, 60.0, 60.0]
    # too few: random boxes inside the shared region, ids -2, -3
    torch.manual_seed(0)
    boxes, ids, mask, events = _select(props, torch.tensor([True, False]), crops, min_boxes=3, fallback="random")
    assert ids.tolist() == [0, -2, -3] and mask.all() and events == ["fallback_random"]
    assert (boxes[1:, :2] >= 8).all() and (boxes[1:, 2:] <= 60).all()
    assert ((boxes[1:, 2:] - boxes[1:, :2]) >= 4 - 1e-5).all()
