"""Per-sample Gaussian blur equals ``v2.functional.gaussian_blur`` (reflect padding) on each sample."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.blur import gaussian_blur, gaussian_kernels
from objssl.data.transforms import blur_kernel_size


@pytest.mark.parametrize("kernel", [3, blur_kernel_size(64), 23])
def test_blur_per_sample_sigma_equals_torchvision(small_batch, kernel):
    sigma = torch.tensor([0.1, 2.0, 0.0, 1.3])
    out = gaussian_blur(small_batch, sigma, kernel)
    for i in range(4):
        ref = TF.gaussian_blur(small_batch[i], [kernel, kernel], [float(sigma[i])] * 2) if sigma[i] > 0 else small_batch[i]
        assert (out[i] - ref).abs().max() <= 1e-5, (kernel, i)
    assert torch.equal(out[2], small_batch[2])  # sigma 0: untouched


def test_kernels_are_normalised_gaussians():
    k = gaussian_kernels(torch.tensor([0.5, 2.0]), 23)
    assert torch.allclose(k.sum(1), torch.ones(2))
    assert k[0, 11] > k[1, 11] and k[0, 0] < k[1, 0]  # a wider sigma spreads further


def test_even_kernel_is_refused(small_batch):
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(small_batch, torch.ones(4), 4)
