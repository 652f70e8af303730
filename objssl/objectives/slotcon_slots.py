"""``slotcon_slots``: SlotCon's slot term: InfoNCE between the (predicted) student slots and the teacher
slots of the other view, over the prototypes present in both views, across images (and processes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from objssl.distributed import all_reduce_sum
from objssl.heads import MLPHead
from objssl.losses import present_slots, slot_infonce
from objssl.objectives.base import BuildContext
from objssl.objectives.slotcon_heads import SlotConHeads
from objssl.registry import OBJECTIVES

__all__ = ["SlotConSlots"]


@OBJECTIVES.register("slotcon_slots")
class SlotConSlots(SlotConHeads):
    """Args: the shared SlotCon head arguments, slot_temp (0.2), gather_distributed (keys of every process).

    Heads: ``predictor`` (→4096→4096→256, online only).
    """

    name = "slotcon_slots"
    loss_key = "loss_slot"

    def __init__(self, *, num_prototypes: int = 256, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 head_norm: str = "bn", teacher_temp: float = 0.07, slot_temp: float = 0.2,
                 gather_distributed: bool = True) -> None:
        super().__init__(num_prototypes=num_prototypes, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim,
                         head_norm=head_norm, teacher_temp=teacher_temp)
        self.slot_temp, self.gather_distributed = slot_temp, gather_distributed

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        return {"predictor": MLPHead(self.proj_dim, self.proj_hidden_dim, self.proj_dim, num_layers=3,
                                     norm=self.head_norm, act="gelu", init="trunc_normal")}

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        (q1, s_q1), (q2, s_q2) = (self.scores(feats, "online", v) for v in (0, 1))
        (k1, s_k1), (k2, s_k2) = (self.scores(feats, "target", v) for v in (0, 1))
        present_k1, present_k2 = present_slots(s_k1), present_slots(s_k2)
        predictor = feats.heads("online", self.name)["predictor"]
        loss = self._contrast(predictor, q1, s_q1, k2, present_k2) + self._contrast(predictor, q2, s_q2, k1, present_k1)
        n_slots = (present_k1.sum(1) + present_k2.sum(1)).float().mean() / 2
        # present prototypes per image: a collapse shows up here first
        return {"loss": loss, "n_slots": n_slots}

    def _contrast(self, predictor: nn.Module, q_slots: Tensor, q_scores: Tensor, k_slots: Tensor,
                  k_present: Tensor) -> Tensor:
        both = present_slots(q_scores) & k_present
        index = torch.nonzero(both.reshape(-1)).reshape(-1)
        # DDP waits for a gradient of every parameter: a zero term keeps the predictor in the graph on
        # a process that has too few queries to call it
        untouched = sum(p.sum() for p in predictor.parameters()) * 0.0
        if self.training:
            # every process takes the same branch: slot_infonce gathers keys from all of them
            # (and SyncBatchNorm statistics are gathered too)
            if all_reduce_sum(torch.tensor(float(len(index)), device=q_slots.device)).item() < 2:
                return q_slots.sum() * 0.0 + untouched
            if len(index) < 2 and not _has_sync_batchnorm(predictor):
                # BatchNorm of this process alone cannot normalise one row: it contributes no query
                index = index[:0]
        flat = q_slots.reshape(-1, q_slots.shape[-1])
        queries = predictor(flat[index]) if len(index) else flat[index] * 0.0
        return slot_infonce(queries, index, k_slots, k_present, self.slot_temp, self.gather_distributed) + untouched


def _has_sync_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
