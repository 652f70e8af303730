"""A whole view of a batch equals torchvision's ops, in the loader path's order, on each sample alone."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.geometry import pad_images
from objssl.data.device.params import ColourParams, ViewBatch, ViewParams
from objssl.data.device.pipeline import DeviceView, apply_view, apply_views, to_unit_float
from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

TV_JITTER = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _reference(img, p: ViewParams, view: DeviceView):
    """The loader path's calls on one float image."""
    x1, y1, x2, y2 = (int(c) for c in p.crop)
    x = TF.resized_crop(img, y1, x1, y2 - y1, x2 - x1, list(view.size), antialias=True)
    if p.flip:
        x = TF.horizontal_flip(x)
    c = p.colour
    if c.jitter:
        for op in c.order:
            x = TV_JITTER[op](x, c.factors[op])
    if c.grayscale:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if c.blur_sigma > 0:
        x = TF.gaussian_blur(x, [view.blur_kernel] * 2, [c.blur_sigma] * 2)
    if c.solarize:
        x = TF.solarize(x, 128 / 255)
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


PARAMS = [
    ViewParams((10.0, 20.0, 300.0, 250.0), True, ColourParams(True, (1.3, 0.7, 1.1, 0.05), (3, 1, 0, 2), False, 1.2, False)),
    ViewParams((0.0, 0.0, 200.0, 180.0), False, ColourParams(False, (1.0, 1.0, 1.0, 0.0), (0, 1, 2, 3), True, 0.0, True)),
    ViewParams((50.0, 40.0, 90.0, 100.0), False, ColourParams(True, (0.7, 1.4, 0.8, -0.1), (0, 1, 2, 3), True, 0.3, True)),
    ViewParams((100.0, 0.0, 400.0, 300.0), True, ColourParams(True, (1.0, 1.2, 1.2, 0.1), (2, 3, 1, 0), False, 2.0, False)),
]


def test_view_equals_torchvision_chain_per_sample(photos):
    imgs = photos[2:6]
    padded, _ = pad_images(imgs)
    view = DeviceView(size=(48, 56), blur_kernel=5, resize="per_sample")
    out = apply_view(to_unit_float(padded), ViewBatch.stack(PARAMS), view)
    for i, (img, p) in enumerate(zip(imgs, PARAMS)):
        assert (out[i] - _reference(img.float() / 255, p, view)).abs().max() <= 1e-5 * 5, i  # /std ≈ 4.4


@pytest.mark.parametrize("resize", ["roi_align", "per_sample"])
def test_each_sample_is_independent_of_the_rest_of_the_batch(photos, resize):
    imgs = photos[2:6]
    padded, _ = pad_images(imgs)
    view = DeviceView(size=(48, 48), blur_kernel=5, resize=resize)
    together = apply_views(padded, [ViewBatch.stack(PARAMS)], [view])[0]
    for i, (img, p) in enumerate(zip(imgs, PARAMS)):
        alone = apply_views(img[None], [ViewBatch.stack([p])], [view])[0]
        assert torch.allclose(together[i], alone[0], atol=1e-5), i


def test_mismatched_batch_is_refused(photos):
    padded, _ = pad_images(photos[:2])
    with pytest.raises(ValueError, match="parameters for 4 samples"):
        apply_view(to_unit_float(padded), ViewBatch.stack(PARAMS), DeviceView(size=(8, 8)))
    with pytest.raises(ValueError, match="resize must be"):
        DeviceView(size=(8, 8), resize="bicubic")


@pytest.mark.gpu
def test_cuda_views_equal_cpu_views(photos):
    imgs = photos[2:6]
    padded, _ = pad_images(imgs)
    batch = ViewBatch.stack(PARAMS)
    for resize in ("roi_align", "per_sample"):
        view = DeviceView(size=(64, 64), blur_kernel=7, resize=resize)
        cpu = apply_views(padded, [batch], [view])[0]
        cuda = apply_views(padded.cuda(), [batch], [view])[0].cpu()
        assert (cuda - cpu).abs().max() <= 1e-4, resize


def test_auto_resize_picks_roi_align_on_cuda_only():
    view = DeviceView(size=(8, 8))
    assert view.resize_method(torch.device("cpu")) == "per_sample"
    assert view.resize_method(torch.device("cuda")) == "roi_align"
    assert DeviceView(size=(8, 8), resize="roi_align").resize_method(torch.device("cpu")) == "roi_align"
