"""A reduced decode (``load_rgb(max_reduction=...)``, JPEG draft mode) and its bound
(:func:`objssl.data.device.augment.max_reduction_for`): never a crop smaller than its view where the
full-resolution crop was not."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from objssl.data import demo_images
from objssl.data.dataset import ImageDataset
from objssl.data.device.augment import REDUCTIONS, max_reduction_for
from objssl.data.device.image_views import DeviceImageViews
from objssl.data.transforms import ViewAugmentation
from objssl.images.decode import BadImageError, load_rgb


def _jpeg(tmp_path, w, h, name="x.jpg", orientation=None):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path = tmp_path / name
    img.save(path, quality=90, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("r", [1, 2, 3, 4, 8, 16])
def test_a_jpeg_is_decoded_at_most_r_times_smaller(tmp_path, r):
    path = _jpeg(tmp_path, 1001, 623)
    img = load_rgb(path, max_reduction=r)
    assert img.mode == "RGB"
    w, h = img.size
    assert w >= math.ceil(1001 / r) and h >= math.ceil(623 / r)
    # and reduced by the largest DCT scale (1, 1/2, 1/4, 1/8) that is at most 1/r
    s = max(f for f in REDUCTIONS if f <= r)
    assert (w, h) == (math.ceil(1001 / s), math.ceil(623 / s))


def test_the_reduced_decode_is_a_downscale_of_the_full_one(tmp_path):
    from torchvision.transforms.v2 import functional as TF

    full = TF.pil_to_tensor(load_rgb(demo_images()[0])).float()
    half = TF.pil_to_tensor(load_rgb(demo_images()[0], max_reduction=2)).float()
    assert half.shape[-1] == math.ceil(full.shape[-1] / 2)
    resized = TF.resize(full, list(half.shape[-2:]), antialias=True)
    assert (resized - half).abs().mean() < 4  # grey levels


def test_other_formats_and_rotations(tmp_path):
    png = tmp_path / "x.png"
    Image.new("RGB", (400, 300), (10, 20, 30)).save(png)
    assert load_rgb(png, max_reduction=4).size == (400, 300)  # no draft mode: full size
    # the callable sees (height, width) after the EXIF rotation, as the views are drawn on it
    seen = []
    rotated = _jpeg(tmp_path, 640, 480, "r.jpg", orientation=6)
    img = load_rgb(rotated, max_reduction=lambda h, w: seen.append((h, w)) or 2)
    assert seen == [(640, 480)] and img.size == (240, 320)


def test_bad_files_still_fail_with_their_name(tmp_path):
    data = (tmp_path / "good.jpg")
    Image.new("RGB", (300, 200)).save(data, quality=90)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data.read_bytes()[:200])
    with pytest.raises(BadImageError, match="cut.jpg"):
        load_rgb(bad, max_reduction=4)
    with pytest.raises(BadImageError, match="smaller than min_side"):
        load_rgb(data, min_side=250, max_reduction=lambda h, w: 2)


def test_the_bound_never_makes_a_view_upsampled():
    torch.manual_seed(0)
    sizes = [(224, 224), (96, 128), (112, 112)]
    for _ in range(500):
        x1, y1 = torch.randint(0, 400, (2,)).tolist()
        w, h = torch.randint(10, 1600, (2,)).tolist()
        crops = torch.tensor([[x1, y1, x1 + w, y1 + h], [0, 0, 2 * w, 2 * h], [0, 0, 3000, 3000]], dtype=torch.float32)
        r = max_reduction_for(crops, sizes)
        for (cx1, cy1, cx2, cy2), (vh, vw) in zip(crops.tolist(), sizes):
            cw, ch = cx2 - cx1, cy2 - cy1
            if cw >= vw and ch >= vh:
                assert cw / r >= vw and ch / r >= vh  # at full size it was not upsampled, nor is it now
        if r < REDUCTIONS[0]:  # the largest such factor: twice as much would upsample one of them
            assert any((c[2] - c[0]) / (2 * r) < vw or (c[3] - c[1]) / (2 * r) < vh
                       for c, (vh, vw) in zip(crops.tolist(), sizes))
    assert max_reduction_for(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), [(224, 224)]) == 1


def test_decoded_crops_stay_at_least_their_views_size(one_torch_thread):
    # through the dataset: crops moved onto the reduced image are still >= the view where they were at full size
    views = DeviceImageViews([ViewAugmentation(size=96), ViewAugmentation(size=64, scale=(0.3, 1.0))])
    full = ImageDataset(demo_images(), views, reduced_decode=False)
    reduced = ImageDataset(demo_images(), views, reduced_decode=True)
    smaller = 0
    for i in range(len(full)):
        for seed in range(5):
            a, b = full[(i, seed)], reduced[(i, seed)]
            smaller += b["source"].shape[-1] < a["source"].shape[-1]
            for pa, pb, size in zip(a["view_params"], b["view_params"], (96, 64)):
                wa, ha = (pa["crop"][2:] - pa["crop"][:2]).tolist()
                wb, hb = (pb["crop"][2:] - pb["crop"][:2]).tolist()
                if wa >= size and ha >= size:
                    assert wb >= size - 1e-3 and hb >= size - 1e-3
    assert smaller > 0
