"""Each batched colour op with per-sample factors equals torchvision's op run on each sample alone."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.colour import (
    SOLARIZE_THRESHOLD,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    random_grayscale,
    random_solarize,
)

TOL = 1e-5
TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


@pytest.mark.parametrize(
    "ours, theirs, factors",
    [
        (adjust_brightness, TF.adjust_brightness, (0.6, 1.4, 1.0, 0.83)),
        (adjust_contrast, TF.adjust_contrast, (0.6, 1.4, 1.0, 1.21)),
        (adjust_saturation, TF.adjust_saturation, (0.8, 1.2, 0.0, 1.07)),
        (adjust_hue, TF.adjust_hue, (-0.1, 0.1, 0.0, 0.5)),
    ],
)
def test_per_sample_factor_equals_torchvision(small_batch, ours, theirs, factors):
    f = torch.tensor(factors)
    out = ours(small_batch, f)
    for i in range(len(f)):
        ref = theirs(small_batch[i], float(f[i]))
        assert (out[i] - ref).abs().max() <= TOL, (ours.__name__, i)
    assert not torch.allclose(out[0], out[1])  # the factors really are per sample


def test_hue_on_saturated_and_grey_pixels():
    # every HSV sector, pure primaries, black, white and grey
    vals = torch.tensor([0.0, 0.25, 0.5, 1.0])
    grid = torch.cartesian_prod(vals, vals, vals).T.reshape(1, 3, 8, 8)
    for f in (-0.5, -0.1, 0.0, 0.07, 0.5):
        out = adjust_hue(grid, torch.tensor([f]))
        assert (out[0] - TF.adjust_hue(grid[0], f)).abs().max() <= TOL, f


def test_jitter_follows_each_samples_order(small_batch):
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.08]] * 4)
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    apply = torch.tensor([True, True, True, False])
    out = color_jitter(small_batch, apply, factors, order)
    for i in range(4):
        ref = small_batch[i]
        if apply[i]:
            for op in order[i].tolist():
                ref = TV_OPS[op](ref, float(factors[i, op]))
        assert (out[i] - ref).abs().max() <= TOL, i
    # the same image and factors in two orders give two different results
    same = small_batch[:1].expand(2, -1, -1, -1)
    two = color_jitter(same, torch.tensor([True, True]), factors[:2], order[:2])
    assert (two[0] - two[1]).abs().max() > 0.01


def test_grayscale_and_solarize_per_sample(small_batch):
    flags = torch.tensor([True, False, True, False])
    grey = random_grayscale(small_batch, flags)
    sol = random_solarize(small_batch, flags)
    for i in range(4):
        g_ref = TF.rgb_to_grayscale(small_batch[i], num_output_channels=3) if flags[i] else small_batch[i]
        s_ref = TF.solarize(small_batch[i], SOLARIZE_THRESHOLD) if flags[i] else small_batch[i]
        assert (grey[i] - g_ref).abs().max() <= TOL
        assert (sol[i] - s_ref).abs().max() <= TOL
    assert not torch.equal(sol[0], small_batch[0])


def test_solarize_threshold_is_the_loaders_uint8_threshold(photos):
    u8 = photos[0][:, :32, :32]
    out = random_solarize(u8.float()[None] / 255, torch.tensor([True]))[0]
    assert torch.equal((out * 255).round().to(torch.uint8), TF.solarize(u8, 128))
