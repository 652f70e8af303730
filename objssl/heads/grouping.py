"""Semantic grouping (SlotCon): learnable prototypes softly assign pixels; slots pool what they own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objssl.registry import HEADS

__all__ = ["SemanticGrouping", "normalize_eps"]


def normalize_eps(dtype: torch.dtype) -> float:
    """L2-normalisation epsilon: 1e-12 in fp32 (bit-parity with the official code), 1e-6 in fp16/bf16,
    where 1e-12 underflows and a zero vector turns into inf (SlotMIM's fix)."""
    return 1e-6 if dtype in (torch.float16, torch.bfloat16) else 1e-12


@HEADS.register("semantic_grouping")
class SemanticGrouping(nn.Module):
    """K prototypes; each pixel's softmax over prototype similarities weights a spatial average.

    ``dots[b, k] = cos(prototype_k, x[b, :, h, w])``; ``attn = softmax_k(dots / temp) + eps``;
    ``slots[b, k] = sum_hw x[b, :, h, w] * attn[b, k, h, w] / sum_hw attn[b, k]`` (the unnormalised
    features are pooled).

    Args:
        num_prototypes: K (256 for COCO, 2048 for ImageNet in SlotCon).
        dim: feature channels D.
        temp: softmax temperature (SlotCon passes the teacher temperature, 0.07, to both branches).
        eps: added to the attention so that every slot has weight somewhere.

    Shapes: ``x [B, D, H, W]`` → ``(slots [B, K, D], dots [B, K, H, W])``.
    """

    def __init__(self, num_prototypes: int, dim: int, temp: float = 0.07, eps: float = 1e-6) -> None:
        super().__init__()
        if num_prototypes < 1 or dim < 1:
            raise ValueError(f"SemanticGrouping: num_prototypes and dim must be >= 1, got {num_prototypes}, {dim}")
        self.num_prototypes, self.dim, self.temp, self.eps = num_prototypes, dim, temp, eps
        self.prototypes = nn.Embedding(num_prototypes, dim)

    def scores(self, x: Tensor) -> Tensor:
        """Cosine similarity of every pixel to every prototype: ``[B, D, H, W] -> [B, K, H, W]``."""
        eps = normalize_eps(x.dtype)
        protos = F.normalize(self.prototypes.weight.to(x.dtype), dim=1, eps=eps)
        return torch.einsum("kd,bdhw->bkhw", protos, F.normalize(x, dim=1, eps=eps))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise ValueError(f"SemanticGrouping expects [B, {self.dim}, H, W], got {tuple(x.shape)}")
        dots = self.scores(x)
        attn = (dots / self.temp).softmax(dim=1) + self.eps
        attn = attn / attn.sum(dim=(2, 3), keepdim=True)
        slots = torch.einsum("bdhw,bkhw->bkd", x, attn)
        return slots, dots
