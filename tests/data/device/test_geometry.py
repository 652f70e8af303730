"""Crop + resize and flips of a padded batch against ``v2.functional`` on each sample alone.

Tolerances: ``per_sample`` is torchvision's own call (≤ 1e-5). ``roi_align`` (bilinear) samples the
image rather than the cut-out crop, so a border row/column blends with the pixels just outside the
crop, and when shrinking it averages a box of ``ceil(scale)`` samples per axis where torchvision's
antialias uses a triangle twice as wide: interpolation-level differences, bounded here on real photos
by a mean absolute difference ≤ 0.01 and a maximum ≤ 0.25 (of a [0, 1] range; the maximum sits on
sharp edges); enlarging, the inside of the view (all but its border pixels) matches to 1e-4.
"""

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.geometry import horizontal_flip, pad_images, resized_crop


def _crops(sizes, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes.tolist():
        cw = int(torch.randint(min(lo, w), min(hi, w) + 1, (1,), generator=g))
        ch = int(torch.randint(min(lo, h), min(hi, h) + 1, (1,), generator=g))
        x1 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        y1 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        out.append([x1, y1, x1 + cw, y1 + ch])
    return torch.tensor(out, dtype=torch.float32)


def _reference(photos, crops, size, interpolation="bilinear"):
    refs = []
    for p, (x1, y1, x2, y2) in zip(photos, crops.long().tolist()):
        r = TF.resized_crop(p.float() / 255, y1, x1, y2 - y1, x2 - x1, list(size),
                            interpolation=InterpolationMode(interpolation), antialias=True)
        refs.append(r.clamp(0, 1) if interpolation == "bicubic" else r)
    return torch.stack(refs)


def test_pad_images_keeps_each_image_and_repeats_its_edges(photos):
    padded, sizes = pad_images(photos)
    H, W = padded.shape[-2:]
    assert (H, W) == (max(p.shape[1] for p in photos), max(p.shape[2] for p in photos))
    for i, p in enumerate(photos):
        h, w = sizes[i].tolist()
        assert (h, w) == tuple(p.shape[-2:])
        assert torch.equal(padded[i, :, :h, :w], p)
        if h < H:
            assert torch.equal(padded[i, :, h, :w], p[:, -1, :])
        if w < W:
            assert torch.equal(padded[i, :, :h, w], p[:, :, -1])
        if h < H and w < W:
            assert torch.equal(padded[i, :, h, w], p[:, -1, -1])
    assert any(s[0] < H for s in sizes.tolist()) and any(s[1] < W for s in sizes.tolist())


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_per_sample_equals_torchvision(photos, interpolation):
    padded, sizes = pad_images(photos)
    crops = _crops(sizes, 40, 512, seed=1)
    out = resized_crop(padded.float() / 255, crops, (56, 64), interpolation=interpolation, method="per_sample")
    assert (out - _reference(photos, crops, (56, 64), interpolation)).abs().max() <= 1e-5


def test_roi_align_within_interpolation_tolerance_when_shrinking(photos):
    padded, sizes = pad_images(photos)
    x = padded.float() / 255
    for seed in range(3):
        crops = _crops(sizes, 100, 512, seed)
        d = (resized_crop(x, crops, (64, 64)) - _reference(photos, crops, (64, 64))).abs()
        assert d.mean() <= 0.01 and d.max() <= 0.25, (seed, float(d.mean()), float(d.max()))


def test_roi_align_enlarging_matches_inside_the_border(photos):
    padded, sizes = pad_images(photos)
    crops = _crops(sizes, 20, 40, seed=3)  # every crop smaller than the 64-px view
    # crops touching the right/bottom edge exercise the edge padding
    crops[0, [0, 2]] += sizes[0, 1] - crops[0, 2]
    crops[2, [1, 3]] += sizes[2, 0] - crops[2, 3]
    d = (resized_crop(padded.float() / 255, crops, (64, 64)) - _reference(photos, crops, (64, 64))).abs()
    assert d[..., 1:-1, 1:-1].max() <= 1e-4
    assert d.mean() <= 0.01


def test_crop_at_the_edge_of_a_smaller_image_in_a_padded_batch(photos):
    small = photos[2]  # 300 x 451, padded up to 512 x 512 by the others
    h, w = small.shape[-2:]
    crop = torch.tensor([[w - 30.0, h - 30.0, float(w), float(h)]])
    alone = resized_crop(small[None].float() / 255, crop, (64, 64))
    padded, _ = pad_images([photos[0], small])
    together = resized_crop(padded.float() / 255, torch.cat([crop, crop]), (64, 64))
    assert padded.shape[-1] > w and torch.allclose(together[1], alone[0], atol=1e-6)


def test_flip_per_sample(small_batch):
    flags = torch.tensor([True, False, False, True])
    out = horizontal_flip(small_batch, flags)
    for i in range(4):
        assert torch.equal(out[i], TF.horizontal_flip(small_batch[i]) if flags[i] else small_batch[i])


def test_unknown_method_is_refused(small_batch):
    with pytest.raises(ValueError, match="method"):
        resized_crop(small_batch, torch.tensor([[0.0, 0, 8, 8]] * 4), (8, 8), method="nearest")
