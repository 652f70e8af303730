"""SoCo's object-level BYOL loss: normalised regression over a box correspondence matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objssl.registry import LOSSES

__all__ = ["correspondence_matrix", "masked_regression_loss", "MaskedRegressionLoss"]


def correspondence_matrix(ids_a: Tensor, valid_a: Tensor, ids_b: Tensor, valid_b: Tensor) -> Tensor:
    """``C[n, i, j] = 1`` iff box i of view a and box j of view b are the same proposal and both are used.

    Duplicated (padding) boxes share their proposal's id, so they add positives, as in SoCo.
    ``ids [B, K]`` (long), ``valid [B, K]`` (bool; e.g. box mask & a pyramid level was assigned)
    → ``float [B, K, K]``.
    """
    same = ids_a[:, :, None] == ids_b[:, None, :]
    return (same & valid_a[:, :, None] & valid_b[:, None, :]).float()


def masked_regression_loss(pred: Tensor, target: Tensor, corr: Tensor, eps: float = 1e-6) -> Tensor:
    """``mean_n  −2 · Σ_ij C_ij ⟨p̂_i, ẑ_j⟩ / (Σ_ij C_ij + eps)`` with L2-normalised rows.

    This is BYOL's ``2 − 2cos`` minus the constant 2, averaged over the positive pairs of each image
    (SoCo's ``regression_loss_bboxs_aware``); an image without positives contributes 0.

    Args:
        pred: ``[B, K, D]`` online predictions of view a. target: ``[B, K, D]`` target projections
            of view b (no gradient). corr: ``[B, K, K]``.

    Returns:
        scalar.
    """
    p = F.normalize(pred.float(), dim=-1)
    z = F.normalize(target.detach().float(), dim=-1)
    sim = torch.bmm(p, z.transpose(1, 2))
    per_image = (sim * corr).sum((1, 2)) / (corr.sum((1, 2)) + eps)
    return -2 * per_image.mean()


@LOSSES.register("masked_regression")
class MaskedRegressionLoss(nn.Module):
    """Symmetrised :func:`masked_regression_loss`: ``L(p_a, z_b, C) + L(p_b, z_a, Cᵀ)``."""

    def forward(self, p_a: Tensor, z_a: Tensor, p_b: Tensor, z_b: Tensor, corr: Tensor) -> Tensor:
        return masked_regression_loss(p_a, z_b, corr) + masked_regression_loss(p_b, z_a, corr.transpose(1, 2))
