"""ORL's stage-3 samples with data.augment_on=device: the loader draws what the loader path draws (same
boxes, neighbour, events, and the same torch RNG state after), the device step makes the loader path's
views and patches (up to its uint8 rounding and PIL's resize), and each sample keeps its own draw."""

import numpy as np
import pytest
import torch

from torchvision.transforms.v2 import functional as TF

from objssl.correspondence.store import CorrespondenceStore
from objssl.data import demo_images, image_size, load_rgb
from objssl.data.device.patch_views import FROM_IMAGE, FROM_NEIGHBOUR, DevicePatchViews
from objssl.data.neighbour_pairs import NO_NEIGHBOUR, NeighbourPairDataset
from objssl.data.roi_pair_events import ROI_EVENTS, collate_neighbour_pairs
from objssl.data.roi_pair_views import RoIPairViews

PATCH, SIDE = 32, 48


def _datasets(store, paths):
    loader = NeighbourPairDataset(paths, store, RoIPairViews(image_size=SIDE, patch_size=PATCH))
    device = NeighbourPairDataset(paths, store, RoIPairViews(image_size=SIDE, patch_size=PATCH, augment_on="device"))
    return loader, device


def _state_after(fn, seed):
    torch.manual_seed(seed)
    out = fn()
    return out, torch.random.get_rng_state()


def _device_step(batch, resize):
    t = RoIPairViews(image_size=SIDE, patch_size=PATCH, augment_on="device")
    return DevicePatchViews.from_augmentations(t.image_augs, t.patch_augs, resize=resize)(batch)


def test_the_transform_makes_the_loader_paths_rng_calls():
    paths = demo_images()
    loader = RoIPairViews(image_size=SIDE, patch_size=PATCH)
    device = RoIPairViews(image_size=SIDE, patch_size=PATCH, augment_on="device")
    image, neighbour = load_rgb(paths[0]), load_rgb(paths[1])
    (w, h), (nw, nh) = image.size, neighbour.size
    boxes = torch.tensor([[0, 0, w // 2, h // 2], [w // 3, h // 4, w, h], [10, 20, 60, 90]])
    pairs = (boxes[:2], torch.tensor([[5, 5, nw // 2, nh // 2], [nw // 2, 0, nw, nh // 3]]))
    # a neighbour's pair, then every fallback: no neighbour, no boxes (so no pairs), no pairs
    cases = [(boxes, neighbour, pairs), (boxes, None, None), (boxes[:0], neighbour, (boxes[:0], boxes[:0])),
             (boxes, neighbour, (boxes[:0], boxes[:0]))]
    for case, (b, n, p) in enumerate(cases):
        last_from = FROM_NEIGHBOUR if case == 0 else FROM_IMAGE
        for seed in range(6):
            want, loader_state = _state_after(lambda: loader(image, b, n, p), seed)
            got, device_state = _state_after(lambda: device(image, b, n, p), seed)
            assert torch.equal(loader_state, device_state), (case, seed)
            assert torch.equal(want["roi_events"], got["roi_events"])
            assert got["patch_source"].tolist() == [FROM_IMAGE] * 3 + [last_from]
            # sizes alone give the same draws
            by_size, _ = _state_after(lambda: device((h, w), b, None if n is None else (nh, nw), p), seed)
            for a, c in zip(got["patch_params"], by_size["patch_params"]):
                assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(ValueError, match="augment_on"):
        RoIPairViews(augment_on="gpu")


def test_dataset_samples_match_the_loader_paths(demo_correspondence):
    store = CorrespondenceStore.open(demo_correspondence)
    paths = demo_images()
    loader, device = _datasets(store, paths)
    assert device.device_mode and not loader.device_mode
    sources = set()
    for seed in range(2 * len(paths)):
        key = (seed % len(paths), 50 + seed)
        a, b = loader[key], device[key]
        for name in ("index", "neighbour", "skipped"):
            assert a[name] == b[name], name
        assert torch.equal(a["roi_events"], b["roi_events"])
        image, neighbour = load_rgb(paths[b["index"]]), load_rgb(store.images[b["neighbour"]])
        assert torch.equal(b["source"], TF.pil_to_tensor(image)) and b["source"].dtype == torch.uint8
        assert torch.equal(b["neighbour_source"], TF.pil_to_tensor(neighbour))
        # the first intra patch's crop is one of the image's stored boxes
        crop, stored = b["patch_params"][0]["crop"], np.array(store.boxes(store.index_of(paths[b["index"]])))
        assert any(torch.equal(crop, box.float()) for box in torch.tensor(stored))
        sources.update(b["patch_source"].tolist())
    assert sources == {FROM_IMAGE, FROM_NEIGHBOUR}


def _pixel_diffs(store, paths, resize, device_seed_offset=0):
    loader, device = _datasets(store, paths)
    keys = [(i, 100 + i) for i in range(len(paths))]
    want = collate_neighbour_pairs([loader[k] for k in keys])
    batch = collate_neighbour_pairs([device[(i, s + device_seed_offset)] for i, s in keys])
    got = _device_step(batch, resize)
    assert sorted(got) == sorted(want)
    out = {}
    for name in ("roi_intra", "roi_inter"):
        assert got[name].shape == want[name].shape == (len(paths), 2, 3, PATCH, PATCH)
        out[name] = (got[name] - want[name]).abs()
    for v in range(2):
        assert got["views"][v].shape == want["views"][v].shape == (len(paths), 3, SIDE, SIDE)
        out[f"view{v}"] = (got["views"][v] - want["views"][v]).abs()
    return out


def test_the_device_step_gives_the_loader_paths_pixels(demo_correspondence):
    # normalised units (1/255 of a pixel is ~0.017): PIL's uint8 antialiased resize and the uint8 colour
    # ops against float ones; measured per_sample: mean 0.019, max 0.08 (patches), mean <= 0.027, max 0.10 (views)
    store = CorrespondenceStore.open(demo_correspondence)
    for name, d in _pixel_diffs(store, demo_images(), "per_sample").items():
        assert d.mean() <= 0.05 and d.max() <= 0.3, (name, float(d.mean()), float(d.max()))
    # roi_align's box pre-filter differs from the antialiased resize at edges; measured means <= 0.04
    for name, d in _pixel_diffs(store, demo_images(), "roi_align").items():
        assert d.mean() <= 0.06, (name, float(d.mean()))


def test_other_draws_are_far_from_the_loader_paths(demo_correspondence):
    # the checks above can fail: another seed's patches and views differ from the loader's by far more
    store = CorrespondenceStore.open(demo_correspondence)
    for name, d in _pixel_diffs(store, demo_images(), "per_sample", device_seed_offset=1000).items():
        assert d.mean() > 0.5, (name, float(d.mean()))  # measured ~0.9-1.2


def test_each_sample_of_a_batch_keeps_its_own_draw(demo_correspondence):
    store = CorrespondenceStore.open(demo_correspondence)
    _, device = _datasets(store, demo_images()[:1])
    samples = [device[(0, 1)], device[(0, 2)], device[(0, 1)]]
    batch = collate_neighbour_pairs(samples)
    assert batch["source"].shape[0] == batch["neighbour_source"].shape[0] == 3
    assert batch["patch_source"].shape == (3, 4) and len(batch["patch_params"]) == 4
    out = _device_step(batch, "per_sample")
    for name in ("roi_intra", "roi_inter"):
        assert torch.equal(out[name][0], out[name][2])  # same seed, same patches
        assert (out[name][0] - out[name][1]).abs().mean() > 0.1  # another seed: other boxes, flips, colours
    for k, p in enumerate(batch["patch_params"]):
        assert torch.equal(p["crop"][0], p["crop"][2])
        assert not all(torch.equal(p[f][0], p[f][1]) for f in p), k


def test_without_a_neighbour_every_patch_is_cut_from_the_image(tmp_path, write_correspondence):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = demo_images()[:2]
    w, h = image_size(paths[0])
    box = [[0, 0, w // 2, h // 2]]
    # image 0's neighbours are both the bad file; image 1's is image 0
    folder = write_correspondence(tmp_path / "stage2", [*paths, str(bad)], [box, box, box],
                                  [[2, 2], [0, 0], [0, 1]], [[[(0, 0)], [(0, 0)]], [[(0, 0)], [(0, 0)]], [[], []]])
    store = CorrespondenceStore.open(folder)
    loader, device = _datasets(store, paths)
    lonely, other = device[(0, 3)], device[(1, 3)]
    assert lonely["neighbour"] == -1 and torch.equal(lonely["neighbour_source"], NO_NEIGHBOUR)
    assert lonely["patch_source"].tolist() == [FROM_IMAGE] * 4
    assert dict(zip(ROI_EVENTS, lonely["roi_events"].tolist()))["no_neighbour"] == 1
    batch = collate_neighbour_pairs([lonely, other])
    assert batch["neighbour_source_hw"].tolist() == [[1, 1], list(image_size(paths[0]))[::-1]]
    want = collate_neighbour_pairs([loader[(0, 3)], loader[(1, 3)]])
    got = _device_step(batch, "per_sample")
    for name in ("roi_intra", "roi_inter"):
        d = (got[name] - want[name]).abs()
        assert d.mean() <= 0.05 and d.max() <= 0.3, (name, float(d.mean()), float(d.max()))
