"""SoCo's box cutout: zero squares only inside the boxes of the views that ask for it."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from objssl.data import demo_images, load_rgb
from objssl.data.transforms import ViewAugmentation
from objssl.data.views import VIEW_PRESETS, BoxAwareViews
from objssl.data.views.box_cutout import cutout_in_boxes
from objssl.proposals import RandomSource

NO_COLOR = ViewAugmentation(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def _inside(boxes, hw):
    """``bool [H, W]``: pixels wholly inside any of ``boxes``."""
    h, w = hw
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = torch.zeros(h, w, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes.tolist():
        out |= (xs >= x1) & (xs + 1 <= x2) & (ys >= y1) & (ys + 1 <= y2)
    return out


def test_cutout_is_a_zero_square_inside_each_box():
    torch.manual_seed(0)
    img = torch.rand(3, 64, 80) + 0.5  # never 0
    boxes = torch.tensor([[4.5, 3.2, 40.0, 30.7], [50.0, 40.0, 79.0, 63.0], [0.0, 0.0, 10.0, 10.0]])
    mask = torch.tensor([True, True, False])
    for seed in range(20):
        torch.manual_seed(seed)
        out = cutout_in_boxes(img, boxes, mask, 1.0, (0.1, 0.3))
        zero = (out == 0).all(dim=0)
        assert torch.equal(out[:, ~zero], img[:, ~zero])  # everything else untouched
        assert not (zero & ~_inside(boxes[:2], (64, 80))).any()  # only inside the valid boxes
        for (x1, y1, x2, y2) in boxes[:2].tolist():
            area = (x2 - x1) * (y2 - y1)
            inside = zero & _inside(torch.tensor([[x1, y1, x2, y2]]), (64, 80))
            n = int(inside.sum())
            side = round(n ** 0.5)
            assert side * side == n and 0.1 * area - 2 * side - 1 <= n <= 0.3 * area + 2 * side + 1
    assert torch.equal(cutout_in_boxes(img, boxes, mask, 0.0, (0.1, 0.3)), img)
    torch.manual_seed(0)
    hits = sum(bool((cutout_in_boxes(img, boxes[:1], mask[:1], 0.5, (0.1, 0.3)) == 0).any()) for _ in range(200))
    assert 70 < hits < 130  # p 0.5 per box


@pytest.mark.parametrize("box_sets", ["shared", "per_pair"])
def test_cutout_only_in_the_boxes_of_views_2_and_3(box_sets):
    photo = load_rgb(demo_images()[2])
    props = RandomSource(n=60, scale=(0.2, 0.5))(np.array(photo)).boxes
    views = tuple(replace(v, color=NO_COLOR) for v in VIEW_PRESETS["soco"]["views"])
    cut = BoxAwareViews.from_preset("soco", views=views, size=96, box_sets=box_sets, cutout_p=1.0,
                                    cutout_area=[0.1, 0.3], box_filter=None)
    assert [v.cutout_p for v in cut.views] == [0.0, 1.0, 1.0]
    plain = BoxAwareViews.from_preset("soco", views=views, size=96, box_sets=box_sets, box_filter=None)
    for seed in range(5):
        torch.manual_seed(seed)
        s = cut(photo, boxes=props)
        torch.manual_seed(seed)
        ref = plain(photo, boxes=props)
        # view 1 is drawn before any cutout: identical to the run without it
        assert torch.equal(s["views"][0], ref["views"][0]) and not (s["views"][0] == 0).all(dim=0).any()
        for v in (1, 2):
            mask = s["box_mask"] if box_sets == "shared" else s["box_mask"][v - 1]
            boxes = s["boxes"][v][mask]
            zero = (s["views"][v] == 0).all(dim=0)  # a normalised photo pixel is never exactly 0
            assert zero.any()
            assert not (zero & ~_inside(boxes, s["views"][v].shape[-2:])).any()
        # view 2 is drawn before view 3's cutout: outside its boxes it equals the uncut view
        if box_sets == "shared":
            zero = (s["views"][1] == 0).all(dim=0)
            assert torch.equal(s["views"][1][:, ~zero], ref["views"][1][:, ~zero])
