"""Slot contrast (SlotCon): InfoNCE between slots of the same prototype in two views, across images.

A slot is *present* in a view when its prototype is the arg-max of at least one pixel. Queries are
the student slots present in both views (after the predictor); keys are every present teacher slot of
the other view, gathered from every process, so other prototypes and other images are negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objssl.distributed import all_gather_cat, rank_and_world
from objssl.registry import LOSSES

__all__ = ["present_slots", "slot_infonce", "SlotInfoNCELoss"]


def present_slots(scores: Tensor) -> Tensor:
    """``[B, K, H, W]`` prototype scores → ``bool [B, K]``: prototype k wins at least one pixel."""
    B, K = scores.shape[:2]
    winners = scores.argmax(dim=1).flatten(1)  # [B, H*W]
    present = torch.zeros(B, K, dtype=torch.bool, device=scores.device)
    present.scatter_(1, winners, True)
    return present


def slot_infonce(
    queries: Tensor, query_index: Tensor, keys: Tensor, key_present: Tensor, temperature: float = 0.2,
    gather_distributed: bool = True,
) -> Tensor:
    """InfoNCE of query slots against the present key slots of all processes.

    Args:
        queries: ``[N, D]`` predicted student slots (normalised here).
        query_index: ``long [N]``, flat index ``b * K + k`` of each query in this process's batch.
        keys: ``[B, K, D]`` teacher slots of the other view (normalised here; no gradient).
        key_present: ``bool [B, K]``.
        temperature: τ = 0.2; the cross-entropy is multiplied by ``2τ`` as in SlotCon.
        gather_distributed: gather keys from every process (False: this process's keys only).

    Returns:
        scalar (mean over this process's queries; 0 with a zero gradient if there are none).

    The positive of query ``(b, k)`` is key ``(b, k)``, which must be present. Keys and masks are
    gathered across processes with ``all_gather`` (a single process works without torch.distributed).
    """
    B, K, D = keys.shape
    if not bool(key_present.view(-1)[query_index].all()):
        raise ValueError("slot_infonce: every query's own key (same image, same prototype) must be present")
    gather = all_gather_cat if gather_distributed else (lambda t: t)
    rank = rank_and_world()[0] if gather_distributed else 0
    eps = 1e-6 if queries.dtype in (torch.float16, torch.bfloat16) else 1e-12
    all_keys = gather(F.normalize(keys.detach().float(), dim=-1, eps=eps).reshape(B * K, D))
    all_present = gather(key_present.reshape(-1))
    present_idx = torch.nonzero(all_present).reshape(-1)
    if len(query_index) == 0:
        return queries.sum() * 0.0
    logits = F.normalize(queries.float(), dim=-1, eps=eps) @ all_keys[present_idx].T / temperature
    # the label is the query's own key among the gathered present keys
    labels = torch.cumsum(all_present.long(), 0)[query_index + rank * B * K] - 1
    return F.cross_entropy(logits, labels) * (2 * temperature)


@LOSSES.register("slot_infonce")
class SlotInfoNCELoss(nn.Module):
    """Module form of :func:`slot_infonce` (τ = 0.2)."""

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, queries: Tensor, query_index: Tensor, keys: Tensor, key_present: Tensor) -> Tensor:
        return slot_infonce(queries, query_index, keys, key_present, self.temperature, self.gather_distributed)
