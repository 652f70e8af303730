"""BYOL's normalised regression loss: ``2 - 2 cos(p, z)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from objssl.registry import LOSSES

__all__ = ["byol_loss", "BYOLLoss"]


def byol_loss(prediction: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean of ``2 - 2 cos(prediction_i, target_i)`` over the leading dimensions.

    Args:
        prediction: online predictions ``[..., D]``.
        target: target projections ``[..., D]`` (gradients are not blocked here: pass a detached
            tensor, as the teacher's output already is).
        eps: guards the normalisation of near-zero vectors (safe under fp16/bf16).

    Returns:
        scalar tensor in ``[0, 4]``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"byol_loss: prediction {tuple(prediction.shape)} != target {tuple(target.shape)}")
    p = F.normalize(prediction.float(), dim=-1, eps=eps)
    z = F.normalize(target.float(), dim=-1, eps=eps)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


@LOSSES.register("byol")
class BYOLLoss(nn.Module):
    """Symmetrised BYOL loss: ``ℓ(p1, z2) + ℓ(p2, z1)`` (summed, as ORL/BYOL do).

    Shapes: ``p1, p2, z1, z2 [B, D]`` → scalar.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
        return byol_loss(p1, z2, self.eps) + byol_loss(p2, z1, self.eps)
