"""Box-aware views: boxes follow pixels, identity across views, method rules, bounded fallbacks."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data import demo_images, load_rgb
from objssl.data.transforms import ViewAugmentation
from objssl.data.views import STAT_KEYS, VIEW_PRESETS, BoxAwareViews, BoxViewSpec
from objssl.proposals import RandomSource

NO_COLOR = ViewAugmentation(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


@pytest.fixture(scope="module")
def photo():
    return load_rgb(demo_images()[2])  # chelsea, 451x300


@pytest.fixture(scope="module")
def proposals(photo):
    return RandomSource(n=100, scale=(0.1, 0.5))(np.array(photo)).boxes


def colorless(name, **overrides):
    """A preset with every colour operation off (so pixels can be compared)."""
    views = tuple(replace(v, color=NO_COLOR) for v in VIEW_PRESETS[name]["views"])
    return BoxAwareViews.from_preset(name, views=views, normalize=False, **overrides)


def expected_view_boxes(boxes_image, crop, flip, hw):
    """What a box becomes in a view: clip to the crop, shift, scale, mirror."""
    x1, y1, x2, y2 = crop.tolist()
    h, w = hw
    b = boxes_image.clone()
    b[:, 0::2] = b[:, 0::2].clamp(x1, x2)
    b[:, 1::2] = b[:, 1::2].clamp(y1, y2)
    b = (b - torch.tensor([x1, y1, x1, y1])) * torch.tensor([w / (x2 - x1), h / (y2 - y1)] * 2)
    if flip:
        b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
    return b


@pytest.mark.parametrize("name", [n for n, p in VIEW_PRESETS.items() if p.get("k", 4) > 0])
def test_boxes_are_the_analytic_transform_of_the_crop(name, photo, proposals):
    views = BoxAwareViews.from_preset(name, size=96)  # crops are drawn in image pixels at any size
    for seed in range(10):
        torch.manual_seed(seed)
        s = views(photo, boxes=proposals)
        m = s["box_mask"]
        assert m.any()
        for v, spec in enumerate(views.views):
            if spec.box_jitter or spec.source_view() is not None:
                continue  # jittered view / resized copy: tested separately
            got = s["boxes"][v][m]
            want = expected_view_boxes(s["boxes_image"][m], s["crops"][v], bool(s["flips"][v]), spec.hw)
            torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
            # every selected box is visible in the view (non-empty after clipping)
            assert ((got[:, 2] - got[:, 0]) * (got[:, 3] - got[:, 1]) > 0).all()
        assert tuple(s["image_size"].tolist()) == (photo.height, photo.width)


def test_box_identity_follows_the_pixels(photo):
    """A red square painted on a real photo is inside box 0 in every view, wherever the crop put it."""
    img = np.array(photo)
    target = torch.tensor([[150.0, 100.0, 230.0, 180.0]])
    img[100:180, 150:230] = (255, 0, 0)
    others = torch.tensor([[10.0, 10.0, 60.0, 60.0], [300.0, 200.0, 400.0, 290.0]])
    specs = tuple(replace(v, box_jitter=0.0) for v in colorless("soco").views)
    views = BoxAwareViews(specs, k=1, normalize=False)
    from PIL import Image

    pil = Image.fromarray(img)
    seen = 0
    for seed in range(15):
        torch.manual_seed(seed)
        s = views(pil, boxes=torch.cat([target, others]))
        if int(s["box_ids"][0]) != 0:
            continue
        seen += 1
        for v, view in enumerate(s["views"]):
            x1, y1, x2, y2 = s["boxes"][v][0].tolist()
            inner = view[:, int(y1) + 2: int(y2) - 2, int(x1) + 2: int(x2) - 2]
            if inner.numel() == 0:
                continue
            red = (inner[0] > 0.9) & (inner[1] < 0.1) & (inner[2] < 0.1)
            assert red.float().mean() > 0.95, (seed, v)
    assert seen >= 3


def to_uint8(view):
    return (view * 255).round().to(torch.uint8)


def test_same_view_is_the_source_view_resized(photo, proposals):
    views = colorless("soco_star")
    for seed in range(4):
        torch.manual_seed(seed)
        s = views(photo, boxes=proposals)
        v1, v4 = s["views"][1], s["views"][3]
        assert v4.shape[-2:] == (112, 112)
        # SoCo*: view 4 is view 2's pixels (before colour) resized, with view 2's crop and flip
        want = TF.resize(to_uint8(v1), [112, 112], antialias=True).float() / 255
        torch.testing.assert_close(v4, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(s["boxes"][3], s["boxes"][1] * 0.5, atol=1e-4, rtol=0)
        assert bool(s["flips"][3]) == bool(s["flips"][1])
        torch.testing.assert_close(s["crops"][3], s["crops"][1])


def test_same_view_draws_its_own_colour(photo, proposals):
    """Only view 4 asks for grayscale: it is grey, its source view is not."""
    grey = ViewAugmentation(jitter_p=0.0, grayscale_p=1.0, blur_p=0.0, solarize_p=0.0)
    specs = list(colorless("soco_star").views)
    specs[3] = replace(specs[3], color=grey)
    views = BoxAwareViews(specs, k=4, normalize=False)
    torch.manual_seed(0)
    s = views(photo, boxes=proposals)
    v1, v4 = s["views"][1], s["views"][3]
    assert (v1[0] - v1[1]).abs().max() > 0.1  # the photo has colour
    assert torch.equal(v4[0], v4[1]) and torch.equal(v4[1], v4[2])
    want = TF.rgb_to_grayscale(TF.resize(to_uint8(v1), [112, 112], antialias=True)).float() / 255
    torch.testing.assert_close(v4[:1], want, atol=1e-6, rtol=0)


def test_jitter_only_on_the_view_that_asks(photo, proposals):
    views = BoxAwareViews.from_preset("soco", size=96)  # view 0: whole image, jitter 0.1 with p 0.5
    moved = 0
    for seed in range(10):
        torch.manual_seed(seed)
        s = views(photo, boxes=proposals)
        m = s["box_mask"]
        plain = expected_view_boxes(s["boxes_image"][m], s["crops"][0], bool(s["flips"][0]), (96, 96))
        diff = (s["boxes"][0][m] - plain).abs().max(dim=1).values
        moved += int((diff > 1e-3).sum())
        # jitter is bounded by 10 % of the box (x1 shift) + 10 % (scale) in view pixels
        size = (plain[:, 2:] - plain[:, :2]).max(dim=1).values
        assert (diff <= 0.2 * size + 1e-3).all()
    assert 5 <= moved <= 35  # about half of 40 boxes


def test_whole_view_keeps_the_image_and_flips_mirror(photo):
    views = BoxAwareViews([BoxViewSpec(64, "whole", hflip_p=1.0, color=NO_COLOR)], k=1, normalize=False)
    box = torch.tensor([[0.0, 0.0, 451.0 / 4, 150.0]])
    torch.manual_seed(0)
    s = views(photo, boxes=box)
    assert s["crops"][0].tolist() == [0, 0, 451, 300] and bool(s["flips"][0])
    torch.testing.assert_close(s["boxes"][0][0], torch.tensor([48.0, 0.0, 64.0, 32.0]), atol=1e-3, rtol=0)
    plain = TF.resize(TF.pil_to_tensor(photo), [64, 64], antialias=True)
    torch.testing.assert_close(s["views"][0], TF.horizontal_flip(plain).float() / 255, atol=1e-6, rtol=0)


def test_overlap_box_is_the_shared_region_in_each_view(photo):
    views = colorless("slotcon")
    for seed in range(20):
        torch.manual_seed(seed)
        s = views(photo)
        assert s["overlap_valid"][0, 1] and s["overlap_valid"][1, 0]
        c0, c1 = s["crops"]
        inter = torch.cat([torch.maximum(c0[:2], c1[:2]), torch.minimum(c0[2:], c1[2:])])
        for i, crop in enumerate((c0, c1)):
            want = expected_view_boxes(inter[None], crop, bool(s["flips"][i]), (224, 224))[0]
            torch.testing.assert_close(s["overlap"][i, 1 - i], want, atol=1e-3, rtol=0)
        # the rule: intersection >= 1 % of view 2's crop
        area = lambda b: float((b[2] - b[0]) * (b[3] - b[1]))  # noqa: E731
        assert area(inter) >= 0.01 * area(c1) - 1e-6


def test_slotcon_never_emits_a_non_overlapping_pair():
    """SlotCon's own fallback could; here 1000 adversarial samples all overlap and resampling is counted."""
    from PIL import Image

    tiny = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    spec = BoxViewSpec(16, scale=(0.01, 0.02), color=NO_COLOR, carries_boxes=False)
    views = BoxAwareViews((spec, spec), k=0, min_overlap_frac=0.01, max_tries=10, normalize=False)
    torch.manual_seed(0)
    for _ in range(1000):
        s = views(tiny)
        ov = s["overlap"][0, 1]
        assert s["overlap_valid"][0, 1] and ov[2] > ov[0] and ov[3] > ov[1]
    assert views.stats["overlap_resampled"] > 0
    assert views.stats["samples"] == 1000


def test_slotcon_retries_only_the_second_view(photo):
    """SlotCon keeps view 1's crop and re-draws view 2: view 1 is the first crop drawn after seeding,
    even in samples that needed retries."""
    from torchvision.transforms import RandomResizedCrop

    spec = BoxViewSpec(16, scale=(0.01, 0.02), color=NO_COLOR, carries_boxes=False)
    views = BoxAwareViews.from_preset("slotcon", views=(spec, spec), normalize=False)
    assert views.keep_first_crop
    probe = TF.pil_to_tensor(photo)
    for seed in range(30):
        torch.manual_seed(seed)
        top, left, h, w = RandomResizedCrop.get_params(probe, [0.01, 0.02], [3 / 4, 4 / 3])
        torch.manual_seed(seed)
        s = views(photo)
        assert s["crops"][0].tolist() == [left, top, left + w, top + h]
    assert views.stats["tries_exhausted"] > 0 and views.stats["overlap_resampled"] > 0


@pytest.mark.parametrize("n_props", [0, 1])
def test_univip_fallback_tops_up_with_valid_random_boxes(photo, n_props):
    views = BoxAwareViews.from_preset("univip", size=64)  # the box rules are in image pixels
    props = torch.tensor([[100.0, 80.0, 200.0, 180.0]])[:n_props]
    for seed in range(10):
        torch.manual_seed(seed)
        s = views(photo, boxes=props)
        assert s["box_mask"].all() and len(s["box_mask"]) == 4
        c0, c1 = s["crops"]
        inter = torch.cat([torch.maximum(c0[:2], c1[:2]), torch.minimum(c0[2:], c1[2:])])
        b = s["boxes_image"]
        assert (b[:, :2] >= inter[:2] - 1e-3).all() and (b[:, 2:] <= inter[2:] + 1e-3).all()
        side = min(64.0, float(inter[2] - inter[0]), float(inter[3] - inter[1]))
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        assert (w >= side - 1e-3).all() and (h >= side - 1e-3).all()
        assert (torch.maximum(w / h, h / w) <= 3 + 1e-3).all()
        random_ids = s["box_ids"][s["box_ids"] <= -2]
        assert len(random_ids) >= 4 - n_props
        assert s["view_events"][STAT_KEYS.index("fallback_random")] == 1
    assert views.stats["no_proposals"] == (10 if n_props == 0 else 0)


def test_univip_terminates_on_a_tiny_image():
    """The UniVIP reproduction loops forever on images with an edge < 64 px; here it is bounded."""
    from PIL import Image

    tiny = Image.fromarray(np.full((40, 40, 3), 128, np.uint8))
    views = BoxAwareViews.from_preset("univip", size=32)
    torch.manual_seed(0)
    for _ in range(20):
        s = views(tiny, boxes=torch.tensor([[0.0, 0.0, 40.0, 40.0]]))
        assert s["box_mask"].all() and s["overlap_valid"][0, 1]
    assert views.stats["tries_exhausted"] == 20  # a 64-px overlap can never fit


def test_soco_whole_fallback_and_padding_modes(photo):
    # no proposals: SoCo falls back to the shared region as the single box, duplicated to K
    views = BoxAwareViews.from_preset("soco", size=64)
    torch.manual_seed(0)
    s = views(photo, boxes=torch.zeros(0, 4))
    assert s["box_mask"].all() and (s["box_ids"] == -100).all()
    assert s["view_events"][STAT_KEYS.index("fallback_whole")] == 1
    assert s["view_events"][STAT_KEYS.index("no_proposals")] == 1
    # one visible proposal, pad by duplication: every slot is the same proposal
    box = torch.tensor([[0.0, 0.0, 451.0, 300.0]])
    torch.manual_seed(0)
    s = views(photo, boxes=box)
    assert s["box_mask"].all() and (s["box_ids"] == 0).all()
    # pad with zeros instead: one valid slot, the rest masked with id -1 and zero boxes
    zeros = BoxAwareViews.from_preset("soco", size=64, pad="zeros")
    torch.manual_seed(0)
    s = zeros(photo, boxes=box)
    assert s["box_mask"].tolist() == [True, False, False, False]
    assert s["box_ids"].tolist() == [0, -1, -1, -1]
    assert all((b[1:] == 0).all() for b in s["boxes"])


def test_reproducible_under_a_seed(photo, proposals):
    views = BoxAwareViews.from_preset("soco_star", size=96)
    torch.manual_seed(123)
    a = views(photo, boxes=proposals)
    torch.manual_seed(123)
    b = views(photo, boxes=proposals)
    for key in ("boxes", "views"):
        for x, y in zip(a[key], b[key]):
            assert torch.equal(x, y)
    for key in ("crops", "flips", "box_ids", "overlap"):
        assert torch.equal(a[key], b[key])


def test_proposals_are_looked_up_and_filtered(photo, proposals, tmp_path):
    from objssl.proposals import ProposalCache, build_cache
    from objssl.proposals.filters import soco_filter

    path = demo_images()[2]
    build_cache(RandomSource(n=100, scale=(0.1, 0.5)), [path], str(tmp_path / "c"), progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    calls = []

    def spy(boxes, wh):
        calls.append((len(boxes), wh))
        return soco_filter(boxes, wh)

    views = BoxAwareViews.from_preset("soco", proposals=cache, box_filter=spy)
    s = views(photo, {"index": 0, "path": path})
    assert calls == [(100, (451, 300))]
    kept = soco_filter(cache.boxes_for(path), (451, 300))
    assert set(s["box_ids"].tolist()) <= set(range(len(kept)))
    with pytest.raises(ValueError, match="meta"):
        views(photo)


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match=r"views\[0\].crop='center'"):
        BoxAwareViews([BoxViewSpec(crop="center")])
    with pytest.raises(ValueError, match="earlier view"):
        BoxAwareViews([BoxViewSpec(crop="same:1"), BoxViewSpec()])
    with pytest.raises(ValueError, match="pad"):
        BoxAwareViews([BoxViewSpec()], pad="reflect")
    with pytest.raises(ValueError, match="no view preset 'moco'"):
        BoxAwareViews.from_preset("moco")


def test_overlap_boxes_show_the_same_pixels_in_both_views(photo):
    """Cut each view's overlap box out (roi_align to 16x16) and undo a flip that only one view has:
    the two crops show the same content."""
    from torchvision.ops import roi_align

    views = colorless("slotcon")
    same, shuffled = [], []
    previous = None
    for seed in range(12):
        torch.manual_seed(seed)
        s = views(photo)
        a = roi_align(s["views"][0][None], [s["overlap"][0, 1][None]], 16, aligned=True)
        b = roi_align(s["views"][1][None], [s["overlap"][1, 0][None]], 16, aligned=True)
        if bool(s["flips"][0]) != bool(s["flips"][1]):  # the flip flags say how to align them
            a = a.flip(-1)
        same.append((a - b).abs().mean().item())
        if previous is not None:
            shuffled.append((a - previous).abs().mean().item())
        previous = b
    assert max(same) < 0.06  # resampling differences only
    assert np.mean(shuffled) > 3 * np.mean(same)


@pytest.mark.parametrize("name", sorted(VIEW_PRESETS))
def test_images_smaller_than_the_view(name):
    """A 23x31 photo crop under 64-px views: every preset upsamples, keeps valid boxes and overlaps."""
    from PIL import Image

    small = Image.fromarray(np.array(load_rgb(demo_images()[0]))[40:63, 60:91])
    views = BoxAwareViews.from_preset(name, size=64, box_filter=None)
    box = torch.tensor([[2.0, 3.0, 20.0, 19.0], [10.0, 0.0, 31.0, 23.0]])
    for seed in range(20):
        torch.manual_seed(seed)
        s = views(small, boxes=box)
        assert tuple(s["image_size"].tolist()) == (23, 31)
        for v, spec in enumerate(views.views):
            assert s["views"][v].shape == (3, *spec.hw) and torch.isfinite(s["views"][v]).all()
            if views.k and spec.carries_boxes:
                b = s["boxes"][v][s["box_mask"]]
                assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
                assert (b >= 0).all() and (b[:, 2] <= spec.hw[1]).all() and (b[:, 3] <= spec.hw[0]).all()
        assert (s["crops"][:, 2] <= 31).all() and (s["crops"][:, 3] <= 23).all()
        if len(views.views) > 1 and name != "byol":
            assert s["overlap_valid"][0, 1]
        if views.k:
            assert s["box_mask"].any()


def test_one_pixel_wide_box_is_carried_and_degenerate_boxes_never_are(photo):
    thin = torch.tensor([[200.0, 20.0, 201.0, 280.0]])  # 1 px wide, most of the image tall
    flat = torch.tensor([[120.0, 100.0, 120.0, 200.0]])  # zero width
    specs = tuple(replace(v, box_jitter=0.0, size=v.hw[0] // 2) for v in VIEW_PRESETS["soco"]["views"])
    views = BoxAwareViews(specs, k=2, pad="zeros", normalize=False)
    carried = 0
    for seed in range(20):
        torch.manual_seed(seed)
        s = views(photo, boxes=torch.cat([thin, flat]))
        assert 1 not in s["box_ids"].tolist()  # the zero-width box is never "visible"
        if int(s["box_ids"][0]) != 0:
            continue
        carried += 1
        for v, spec in enumerate(views.views):
            want = expected_view_boxes(thin, s["crops"][v], bool(s["flips"][v]), spec.hw)
            torch.testing.assert_close(s["boxes"][v][:1], want, atol=1e-3, rtol=0)
            w = float(s["boxes"][v][0, 2] - s["boxes"][v][0, 0])
            assert 0 < w <= 2 * spec.hw[1] / float(s["crops"][v, 2] - s["crops"][v, 0])
    assert carried >= 10
    # "fully inside" (UniVIP): the degenerate box passes no visibility test either
    univip = BoxAwareViews.from_preset("univip", size=64, box_filter=None)
    torch.manual_seed(0)
    s = univip(photo, boxes=torch.tensor([[0.0, 0.0, 0.0, 0.0]]))
    assert (s["box_ids"] < 0).all() and s["box_mask"].all()


def test_overlap_in_view_maps_with_the_view_and_is_zero_when_disjoint():
    from objssl.data.views import overlap_in_view

    crop = torch.tensor([100.0, 50.0, 300.0, 150.0])  # 200 x 100 -> view 50 x 100 (h, w)
    others = torch.tensor([[200.0, 0.0, 400.0, 100.0], [0.0, 0.0, 50.0, 50.0], crop.tolist()])
    got = overlap_in_view(crop, others, False, (50, 100))
    torch.testing.assert_close(got, torch.tensor([[50.0, 0.0, 100.0, 25.0], [0.0] * 4, [0.0, 0.0, 100.0, 50.0]]))
    flipped = overlap_in_view(crop, others[0], True, (50, 100))
    torch.testing.assert_close(flipped, torch.tensor([0.0, 0.0, 50.0, 25.0]))


def test_presets_say_what_batch_fields_they_provide(photo, proposals):
    from objssl.data.collate import collate_views
    from objssl.data.transforms import MULTI_VIEW_PROVIDES, MultiViewTransform
    from objssl.data.views import preset_provides
    from objssl.errors import ConfigError

    assert preset_provides("soco") == {"views", "boxes", "overlap"}
    assert preset_provides("slotcon") == preset_provides("byol") == {"views", "overlap"}
    for name in VIEW_PRESETS:
        views = BoxAwareViews.from_preset(name, size=64)
        assert views.provides == preset_provides(name)
        torch.manual_seed(0)
        batch = collate_views([views(photo, boxes=proposals)])
        assert views.provides <= set(batch)
        # "boxes" is only promised when there are boxes to carry
        assert ("boxes" in views.provides) == (batch["boxes"][0].shape[1] > 0)
    assert MultiViewTransform.provides == MULTI_VIEW_PROVIDES == {"views"}
    with pytest.raises(ConfigError, match="no view preset 'moco'; known: byol"):
        preset_provides("moco")
