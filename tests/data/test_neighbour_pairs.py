"""ORL's stage-3 samples from a real stage-2 folder: the patches are cut from stored boxes and pairs,
slots are drawn uniformly, fallbacks and bad neighbours are counted, draws are seeded."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from objssl.correspondence.store import CorrespondenceStore
from objssl.data import demo_images, image_size, load_rgb
from objssl.data.neighbour_pairs import NeighbourPairDataset
from objssl.data.roi_pair_events import ROI_EVENTS, collate_neighbour_pairs
from objssl.data.roi_pair_views import RoIPairViews, crop_patch
from objssl.data.transforms import BYOL_VIEWS, ViewAugmentation

#: no random op: a patch is its crop, normalised
PLAIN = (ViewAugmentation(hflip_p=0, jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0),) * 2
PATCH = 24


def _plain_dataset(store, paths):
    return NeighbourPairDataset(paths, store, RoIPairViews(image_size=32, patch_size=PATCH, augmentations=PLAIN))


def _patch(dataset, image, box):
    return dataset.transform.patch_views[0](crop_patch(image, box, PATCH))


def _which(patch, candidates):
    return [k for k, c in enumerate(candidates) if torch.equal(patch, c)]


def test_crop_patch_is_a_bilinear_crop_and_resize_of_the_box():
    img = load_rgb(demo_images()[2])
    got = crop_patch(img, torch.tensor([40, 30, 240, 130]), 96)
    assert got.size == (96, 96)
    want = img.crop((40, 30, 240, 130)).resize((96, 96), Image.BILINEAR)
    assert np.array_equal(np.array(got), np.array(want))


def test_patches_are_cut_from_the_stored_boxes_and_pairs(demo_correspondence):
    store = CorrespondenceStore.open(demo_correspondence)
    paths = demo_images()[:3]
    dataset = _plain_dataset(store, paths)
    slots, picked = set(), set()
    for seed in range(24):
        i = seed % 3
        s = dataset[(i, seed)]
        image, row = load_rgb(paths[i]), store.index_of(paths[i])
        assert s["index"] == i and s["skipped"] == 0 and s["roi_events"].tolist() == [0] * len(ROI_EVENTS)
        assert s["roi_intra"].shape == s["roi_inter"].shape == (2, 3, PATCH, PATCH)
        assert [v.shape for v in s["views"]] == [(3, 32, 32)] * 2
        # the first intra patch is one of the image's boxes
        assert len(_which(s["roi_intra"][0], [_patch(dataset, image, b) for b in store.boxes(row)])) >= 1
        # the inter pair is one stored pair of the drawn neighbour: query box from the image, the other from it
        slot = list(store.neighbours(row)).index(s["neighbour"])
        query, other, _ = store.pairs(row, slot)
        neighbour = load_rgb(store.images[s["neighbour"]])
        firsts = _which(s["roi_inter"][0], [_patch(dataset, image, b) for b in query])
        seconds = _which(s["roi_inter"][1], [_patch(dataset, neighbour, b) for b in other])
        assert set(firsts) & set(seconds)
        slots.add(slot)
        picked.update((slot, k) for k in set(firsts) & set(seconds))
    assert slots == {0, 1} and len(picked) >= 4  # both neighbours and several pairs were drawn


def test_the_same_seed_gives_the_same_sample(demo_correspondence):
    store = CorrespondenceStore.open(demo_correspondence)
    dataset = NeighbourPairDataset(demo_images()[:2], store, RoIPairViews(image_size=32, patch_size=PATCH))
    a, b, c = dataset[(1, 5)], dataset[(1, 5)], dataset[(1, 6)]
    for key in ("roi_intra", "roi_inter"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["views"][0], b["views"][0]) and not torch.equal(a["roi_intra"], c["roi_intra"])


def test_images_without_boxes_or_pairs_fall_back_and_are_counted(tmp_path, write_correspondence):
    paths = demo_images()[:3]
    w, h = image_size(paths[1])
    boxes = [[], [[0, 0, w // 2, h // 2], [w // 2, h // 2, w, h]], [[10, 10, 200, 200]]]
    # image 0: no boxes, so no pairs; image 1: its neighbour 0 has no boxes, neighbour 2 pairs with it
    folder = write_correspondence(tmp_path, paths, boxes, [[1, 2], [0, 2], [1, 0]],
                                  [[[], []], [[], [(1, 0)]], [[(0, 1)], []]])
    store = CorrespondenceStore.open(folder)
    dataset = _plain_dataset(store, paths)
    no_boxes = dataset[(0, 0)]
    ev = dict(zip(ROI_EVENTS, no_boxes["roi_events"].tolist()))
    assert ev["no_boxes"] == 1 and ev["no_pairs"] == 1 and ev["no_neighbour"] == 0
    whole = load_rgb(paths[0])
    assert torch.equal(no_boxes["roi_intra"][0], _patch(dataset, whole, [0, 0, *whole.size]))
    assert torch.equal(no_boxes["roi_inter"], no_boxes["roi_intra"])  # the inter pair is the intra pair
    seen = {}
    for seed in range(16):
        s = dataset[(1, seed)]
        seen[s["neighbour"]] = s["roi_events"].tolist()
        if s["neighbour"] == 0:
            assert torch.equal(s["roi_inter"], s["roi_intra"])
    assert seen[0] == [0, 0, 1, 0] and seen[2] == [0, 0, 0, 0]
    batch = collate_neighbour_pairs([dataset[(i, i)] for i in range(3)] + [no_boxes])
    assert int(batch["counters"]["roi/no_boxes"]) == 2 and int(batch["counters"]["roi/no_neighbour"]) == 0
    assert int(batch["counters"]["roi/no_pairs"]) >= 2 and batch["roi_events"].shape == (4, len(ROI_EVENTS))


def test_a_bad_neighbour_is_a_counted_skip_replaced_by_the_next(tmp_path, write_correspondence):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = demo_images()[:2]
    images = [*paths, str(bad)]
    box = [[0, 0, 100, 100]]
    folder = write_correspondence(tmp_path / "stage2", images, [box, box, box],
                                  [[2, 1], [2, 2], [0, 1]], [[[(0, 0)], [(0, 0)]], [[(0, 0)], [(0, 0)]], [[], []]])
    dataset = _plain_dataset(CorrespondenceStore.open(folder), paths)
    for seed in range(6):
        s = dataset[(0, seed)]  # either slot leads to neighbour 1: directly, or after the bad one
        assert s["neighbour"] == 1 and s["skipped"] in (0, 1) and s["roi_events"].sum() == 0
    skipped = {dataset[(0, seed)]["skipped"] for seed in range(12)}
    assert skipped == {0, 1}
    lonely = dataset[(1, 0)]  # both of image 1's neighbours are the bad file
    assert lonely["skipped"] == 2 and lonely["neighbour"] == -1
    assert dict(zip(ROI_EVENTS, lonely["roi_events"].tolist()))["no_neighbour"] == 1
    assert torch.equal(lonely["roi_inter"], lonely["roi_intra"])
    # a bad training image is replaced by the next one, as in ImageDataset, with that image's boxes and pairs
    replaced = _plain_dataset(CorrespondenceStore.open(folder), [str(bad), paths[0]])[(0, 0)]
    assert replaced["index"] == 1 and replaced["skipped"] >= 1 and replaced["neighbour"] == 1


def test_an_image_missing_from_the_store_is_a_key_error(demo_correspondence, tmp_path):
    store = CorrespondenceStore.open(demo_correspondence)
    with pytest.raises(KeyError, match="not among"):
        _plain_dataset(store, [str(tmp_path / "elsewhere.jpg")])


def test_the_patch_pipeline_is_orls_without_a_resized_crop():
    views = RoIPairViews(patch_size=96)
    for pipeline, aug in zip(views.patch_views, BYOL_VIEWS):
        ops = [type(t).__name__ for t in pipeline.transforms] + \
              [type(t).__name__ for t in pipeline.transforms[-1].transforms]
        assert "RandomResizedCrop" not in ops and "RandomHorizontalFlip" in ops
        probs = {type(t.transforms[0]).__name__: t.p for t in pipeline.transforms[-1].transforms
                 if isinstance(t, v2.RandomApply)}
        assert probs["ColorJitter"] == aug.jitter_p == 0.8 and probs["GaussianBlur"] == aug.blur_p
        solarize = [t.p for t in pipeline.transforms[-1].transforms if isinstance(t, v2.RandomSolarize)]
        assert solarize == ([aug.solarize_p] if aug.solarize_p else [])
