"""``slotcon_slots``: SlotCon's slot term: InfoNCE between the (predicted) student slots and the teacher
slots of the other view, over the prototypes present in both views, across images (and processes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

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
        if len(index) < 2 and self.training:  # BatchNorm in the predictor needs two rows
            return q_slots.sum() * 0.0
        queries = predictor(q_slots.reshape(-1, q_slots.shape[-1])[index])
        return slot_infonce(queries, index, k_slots, k_present, self.slot_temp, self.gather_distributed)
