"""Gaussian blur of a batch with one sigma per sample (``v2.GaussianBlur``'s result for each sample).

As torchvision: a ``k × k`` kernel (``k`` odd, the same for the whole view: ~10 % of its side,
the loader's rule, ``objssl.data.transforms.blur_kernel_size``), weights ``exp(-t² / 2σ²)`` normalised, reflect
padding of ``k // 2``. The 2-D Gaussian is separable, so it runs as two grouped 1-D convolutions, one
group per (sample, channel) with that sample's kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_kernels", "gaussian_blur"]


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """``[N, k]`` normalised 1-D Gaussian kernels, one per ``sigma`` (``[N]``, all > 0)."""
    t = torch.arange(kernel_size, device=sigma.device, dtype=sigma.dtype) - (kernel_size // 2)
    w = torch.exp(-(t[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    return w / w.sum(dim=1, keepdim=True)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each sample of ``images`` (``float [B, C, H, W]``) with its ``sigma`` (``[B]``; 0: unchanged)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"gaussian_blur: kernel_size must be odd and positive, got {kernel_size}")
    rows = torch.nonzero(sigma > 0).reshape(-1)
    if not len(rows):
        return images
    x = images[rows]
    n, c, h, w = x.shape
    pad = kernel_size // 2
    k = gaussian_kernels(sigma[rows].to(images.dtype), kernel_size).repeat_interleave(c, dim=0)  # [n*c, k]
    x = F.pad(x, [pad, pad, pad, pad], mode="reflect").reshape(1, n * c, h + 2 * pad, w + 2 * pad)
    x = F.conv2d(x, k[:, None, None, :], groups=n * c)
    x = F.conv2d(x, k[:, None, :, None], groups=n * c)
    out = images.clone()
    out[rows] = x.reshape(n, c, h, w)
    return out
