"""Batching box-aware samples (and the batch totals of their counted fallbacks)."""

from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader

from objssl.data import demo_images, load_rgb
from objssl.data.collate import collate_views
from objssl.data.dataset import ImageDataset
from objssl.data.views import STAT_KEYS, VIEW_PRESETS, BoxAwareViews
from objssl.proposals import ProposalCache, RandomSource, build_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("props") / "cache"
    build_cache(RandomSource(n=50), demo_images(), str(out), max_side=128, progress=False)
    return ProposalCache(str(out))


@pytest.mark.parametrize("name", sorted(VIEW_PRESETS))
def test_every_preset_through_dataset_loader_and_collate(name, cache):
    views = BoxAwareViews.from_preset(name, proposals=cache, size=48)
    ds = ImageDataset(demo_images(), views)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_views)
    batch = next(iter(loader))
    V, K = len(views.views), views.k
    assert len(batch["views"]) == len(batch["boxes"]) == V
    for v, spec in enumerate(views.views):
        assert batch["views"][v].shape == (3, 3, *spec.hw)
        assert batch["boxes"][v].shape == (3, K, 4)
    assert batch["box_mask"].shape == batch["box_ids"].shape == (3, K)
    assert batch["crops"].shape == (3, V, 4) and batch["flips"].shape == (3, V)
    assert batch["overlap"].shape == (3, V, V, 4) and batch["overlap_valid"].shape == (3, V, V)
    assert batch["view_events"].shape == (3, len(STAT_KEYS))
    assert batch["index"].tolist() == [0, 1, 2]
    if K:
        # ids point into each image's proposal list in the cache
        for b, i in enumerate(batch["index"].tolist()):
            ids = batch["box_ids"][b][batch["box_ids"][b] >= 0]
            assert (ids < len(cache.boxes(i))).all()


def test_collate_rejects_mismatched_samples():
    a = {"views": [torch.zeros(3, 8, 8)], "boxes": [torch.zeros(4, 4)], "box_mask": torch.ones(4, dtype=torch.bool)}
    b = {"views": [torch.zeros(3, 8, 8)], "boxes": [torch.zeros(2, 4)], "box_mask": torch.ones(2, dtype=torch.bool)}
    with pytest.raises(ValueError, match="K"):
        collate_views([a, b])
    c = {"views": [torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)], "boxes": [torch.zeros(4, 4)] * 2,
         "box_mask": torch.ones(4, dtype=torch.bool)}
    with pytest.raises(ValueError, match="numbers of 'views'"):
        collate_views([a, c])
    with pytest.raises(ValueError, match="empty"):
        collate_views([])


def test_collate_keeps_default_collate_for_other_keys():
    samples = [
        {"views": [torch.full((3, 4, 4), float(i)), torch.zeros(3, 2, 2)], "boxes": [torch.ones(2, 4) * i] * 2,
         "index": i, "path": f"img{i}.jpg", "meta": {"scale": 0.5 * i}}
        for i in range(3)
    ]
    batch = collate_views(samples)
    assert [v.shape for v in batch["views"]] == [(3, 3, 4, 4), (3, 3, 2, 2)]
    assert batch["views"][0][:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch["boxes"][1].shape == (3, 2, 4) and batch["boxes"][1][2, 0, 0] == 2
    assert batch["index"].tolist() == [0, 1, 2] and batch["path"] == ["img0.jpg", "img1.jpg", "img2.jpg"]
    torch.testing.assert_close(batch["meta"]["scale"], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    other = dict(samples[0], views=[torch.zeros(3, 4, 4), torch.zeros(3, 3, 3)])
    with pytest.raises(ValueError, match=r"views\[1\] differs in size"):
        collate_views([samples[0], other])


def test_collate_sums_view_events_into_counters():
    """Two images without proposals and one with: SoCo counts no_proposals twice and falls back to
    the whole shared region for exactly those two."""
    views = BoxAwareViews.from_preset("soco", size=48)
    photo = load_rgb(demo_images()[2])
    w, h = photo.size
    boxes = torch.tensor([[0.0, 0.0, w, h], [w / 4, h / 4, 3 * w / 4, 3 * h / 4]])  # the first is in every view
    samples = []
    for seed, b in enumerate([None, boxes, None]):
        torch.manual_seed(seed)
        samples.append(views(photo, boxes=b))
    batch = collate_views(samples)
    assert set(batch["counters"]) == {f"views/{k}" for k in STAT_KEYS}
    for i, key in enumerate(STAT_KEYS):
        total = batch["counters"][f"views/{key}"]
        assert total.dtype == torch.long and total.ndim == 0
        assert int(total) == sum(int(s["view_events"][i]) for s in samples)
    assert int(batch["counters"]["views/no_proposals"]) == 2
    assert int(batch["counters"]["views/fallback_whole"]) == 2
    assert batch["view_events"].shape == (3, len(STAT_KEYS))  # the per-sample counts stay
    bad = [dict(s, view_events=s["view_events"][:3]) for s in samples]
    with pytest.raises(ValueError, match="view_events must be"):
        collate_views(bad)


def test_counters_reach_the_batch_through_loader_workers(cache):
    """The counts come from the samples, so they survive worker processes (the transforms' own
    ``stats`` stay in the workers)."""
    views = BoxAwareViews.from_preset("univip", proposals=cache, size=48)
    ds = ImageDataset(demo_images(), views)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_views)
    batch = next(iter(loader))
    summed = batch["view_events"].sum(0)
    assert [int(batch["counters"][f"views/{k}"]) for k in STAT_KEYS] == summed.tolist()
    assert views.stats["samples"] == 0  # nothing was counted in this process


def test_samples_without_view_events_have_no_counters():
    samples = [{"views": [torch.zeros(3, 4, 4)], "index": i} for i in range(2)]
    assert "counters" not in collate_views(samples)


def test_multi_view_transform_batches_as_default_collate(photo_folder):
    from torch.utils.data import default_collate

    from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform

    augs = [replace(a, size=32) for a in BYOL_VIEWS]
    ds = ImageDataset(sorted(str(p) for p in photo_folder.iterdir()), MultiViewTransform.from_augmentations(augs))
    samples = [ds[(i, 100 + i)] for i in range(3)]
    got, want = collate_views(samples), default_collate(samples)
    assert got.keys() == want.keys() == {"views", "index", "skipped"}
    assert len(got["views"]) == len(want["views"]) == 2
    for g, w in zip(got["views"], want["views"]):
        assert g.shape == (3, 3, 32, 32) and torch.equal(g, w)
    assert torch.equal(got["index"], want["index"]) and torch.equal(got["skipped"], want["skipped"])
