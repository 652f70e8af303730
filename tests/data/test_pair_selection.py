"""SoCo's per-pair box sets: each pair of view 0 with another view draws, jitters and pads its own boxes."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from objssl.data import demo_images, load_rgb
from objssl.data.collate import collate_views
from objssl.data.views import STAT_KEYS, VIEW_PRESETS, BoxAwareViews, BoxViewSpec
from objssl.data.views.pair_selection import pair_views, pairs_visible, select_pair_sets
from objssl.proposals import RandomSource

#: a 200x100 image: view 1 sees the left half, view 2 the right half (view 0 is the whole image)
CROPS = torch.tensor([[0.0, 0.0, 200.0, 100.0], [0.0, 0.0, 100.0, 100.0], [100.0, 0.0, 200.0, 100.0]])
LEFT, RIGHT, SPAN = [10.0, 10.0, 60.0, 60.0], [130.0, 20.0, 190.0, 80.0], [80.0, 30.0, 120.0, 70.0]


def _select(props, crops, views, k=4, pad="duplicate"):
    roots = pair_views(views)
    visible = pairs_visible(props, crops, roots, 0.0)
    return select_pair_sets(props, visible, crops, roots, k=k, min_boxes=2, pad=pad, fallback="whole",
                            fallback_min_size=32.0, on_event=lambda *a: None)


def test_hand_made_pairs_draw_from_their_own_crops_and_pad_from_their_own_ids():
    props = torch.tensor([LEFT, RIGHT, SPAN])
    views = [BoxViewSpec(crop="whole"), BoxViewSpec(), BoxViewSpec()]
    for seed in range(10):
        torch.manual_seed(seed)
        boxes, ids, mask = _select(props, CROPS, views)
        assert boxes.shape == (2, 4, 4) and mask.all()
        # two visible per pair: both taken, the two pads duplicate ids of that pair only
        assert set(ids[0].tolist()) == {0, 2} and set(ids[1].tolist()) == {1, 2}
        for p in range(2):
            torch.testing.assert_close(boxes[p], props[ids[p]])
    # one proposal per pair: every slot of a pair is that pair's proposal (never the other pair's)
    torch.manual_seed(0)
    _, ids, _ = _select(torch.tensor([LEFT, RIGHT]), CROPS, views)
    assert ids[0].tolist() == [0] * 4 and ids[1].tolist() == [1] * 4
    # zero padding instead: masked slots, id -1
    _, ids, mask = _select(torch.tensor([LEFT, RIGHT]), CROPS, views, pad="zeros")
    assert mask.tolist() == [[True, False, False, False]] * 2 and ids[:, 1:].eq(-1).all()


def test_a_same_view_reuses_its_source_pair_and_a_boxless_view_has_none():
    props = torch.tensor([LEFT, RIGHT, SPAN])
    views = [BoxViewSpec(crop="whole"), BoxViewSpec(), BoxViewSpec(), BoxViewSpec(crop="same:1"),
             BoxViewSpec(carries_boxes=False)]
    crops = torch.cat([CROPS, CROPS[1:2], CROPS[:1]])
    assert pair_views(views) == [1, 2, 1, None]
    torch.manual_seed(0)
    boxes, ids, mask = _select(props, crops, views)
    assert torch.equal(ids[2], ids[0]) and torch.equal(boxes[2], boxes[0])  # SoCo*: bboxs1_14 = bboxs1_12
    assert not mask[3].any() and ids[3].eq(-1).all()


def test_no_visible_proposal_falls_back_per_pair():
    views = [BoxViewSpec(crop="whole"), BoxViewSpec(), BoxViewSpec()]
    events = []
    roots = pair_views(views)
    props = torch.tensor([LEFT])  # visible in pair 0 only
    boxes, ids, mask = select_pair_sets(props, pairs_visible(props, CROPS, roots, 0.0), CROPS, roots, k=2,
                                        min_boxes=2, pad="duplicate", fallback="whole", fallback_min_size=32.0,
                                        on_event=lambda key, msg: events.append(key))
    assert events == ["fallback_whole"]
    assert ids[0].tolist() == [0, 0] and ids[1].tolist() == [-100, -100]
    torch.testing.assert_close(boxes[1, 0], CROPS[2])  # the pair's shared region: view 2's crop


@pytest.fixture(scope="module")
def photo():
    return load_rgb(demo_images()[2])  # chelsea, 451x300


def _in_view(boxes_image, crop, flip, hw):
    x1, y1, x2, y2 = crop.tolist()
    h, w = hw
    b = boxes_image.clone()
    b[:, 0::2] = b[:, 0::2].clamp(x1, x2)
    b[:, 1::2] = b[:, 1::2].clamp(y1, y2)
    b = (b - torch.tensor([x1, y1, x1, y1])) * torch.tensor([w / (x2 - x1), h / (y2 - y1)] * 2)
    if flip:
        b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
    return b


@pytest.mark.parametrize("name", ["soco", "soco_star", "soco_c4"])
def test_per_pair_views_on_a_real_photo(name, photo):
    props = RandomSource(n=80, scale=(0.1, 0.4))(np.array(photo)).boxes
    from objssl.registry import METHODS

    # the method's own changes to the preset (SoCo-C4: no view-1 jitter)
    views = BoxAwareViews.from_preset(name, size=96, box_sets="per_pair", box_filter=None,
                                      view_overrides=METHODS.get(name).view_overrides)
    P = len(views.views) - 1
    differ = 0
    for seed in range(8):
        torch.manual_seed(seed)
        s = views(photo, boxes=props)
        assert s["box_mask"].shape == (P, 4) and s["boxes"][0].shape == (P, 4, 4)
        for p in range(P):
            b, m = p + 1, s["box_mask"][p]
            spec = views.views[b]
            if spec.source_view() is None:  # a resized copy is tested by the same-view tests
                want = _in_view(s["boxes_image"][p][m], s["crops"][b], bool(s["flips"][b]), spec.hw)
                torch.testing.assert_close(s["boxes"][b][m], want, atol=1e-3, rtol=0)
            # every id of the pair is a proposal that meets both of the pair's crops
            assert set(s["box_ids"][p][m].tolist()) <= set(
                torch.nonzero(pairs_visible(props, s["crops"], [b], 0.0)[b]).reshape(-1).tolist())
            # view 0's boxes of the pair: its own jitter of the pair's set (SoCo-C4: no jitter)
            plain = _in_view(s["boxes_image"][p][m], s["crops"][0], bool(s["flips"][0]), views.views[0].hw)
            size = (plain[:, 2:] - plain[:, :2]).max(dim=1).values
            diff = (s["boxes"][0][p][m] - plain).abs().max(dim=1).values
            assert (diff <= 0.2 * size + 1e-3).all()
            if name == "soco_c4":
                assert (diff < 1e-3).all()
        if P > 1 and not torch.equal(s["box_ids"][0], s["box_ids"][1]):
            differ += 1
        if name == "soco_star":
            assert torch.equal(s["box_ids"][2], s["box_ids"][0]) and torch.equal(s["boxes"][0][2], s["boxes"][0][0])
    if name != "soco_c4":
        assert differ >= 6  # the 1-2 and 1-3 sets are drawn independently


def test_per_pair_is_reproducible_collates_and_counts_fallbacks_per_pair(photo):
    views = BoxAwareViews.from_preset("soco", size=64, box_sets="per_pair")
    torch.manual_seed(3)
    a = views(photo, boxes=torch.zeros(0, 4))
    torch.manual_seed(3)
    b = views(photo, boxes=torch.zeros(0, 4))
    assert all(torch.equal(x, y) for x, y in zip(a["views"] + a["boxes"], b["views"] + b["boxes"]))
    assert (a["box_ids"] == -100).all()
    assert a["view_events"][STAT_KEYS.index("fallback_whole")] == 2  # one per pair
    batch = collate_views([a, b])
    assert batch["box_mask"].shape == (2, 2, 4) and batch["boxes"][0].shape == (2, 2, 4, 4)
    assert batch["boxes"][1].shape == (2, 4, 4) and int(batch["counters"]["views/fallback_whole"]) == 4


def test_bad_box_sets_are_named():
    with pytest.raises(ValueError, match="box_sets"):
        BoxAwareViews.from_preset("soco", box_sets="both")
    with pytest.raises(ValueError, match="instance_canvas"):
        BoxAwareViews.from_preset("univip", box_sets="per_pair")
    assert "box_sets" not in VIEW_PRESETS["soco"]  # the preset itself stays on the shared layout


def test_tries_lower_the_minimum_until_every_pair_has_one(photo):
    """One proposal in the top-left corner: a pair needs two visible boxes at first, one after a try."""
    specs = tuple(replace(v, box_jitter=0.0) for v in VIEW_PRESETS["soco"]["views"])
    views = BoxAwareViews(specs, k=4, min_boxes=2, max_tries=5, fallback="whole", box_sets="per_pair")
    corner = torch.tensor([[0.0, 0.0, 451.0, 300.0]])  # always visible: the first try cannot reach 2
    torch.manual_seed(0)
    s = views(photo, boxes=corner)
    assert s["view_events"][STAT_KEYS.index("tries_exhausted")] == 0  # the second try accepts one box
    assert (s["box_ids"] == 0).all()
    shared = BoxAwareViews(specs, k=4, min_boxes=2, max_tries=5, fallback="whole")  # a fixed minimum
    torch.manual_seed(0)
    assert shared(photo, boxes=corner)["view_events"][STAT_KEYS.index("tries_exhausted")] == 1
