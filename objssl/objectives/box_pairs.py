"""What SoCo's box terms share: heads on used boxes only, and view 1's boxes against every other view's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from objssl.losses import correspondence_matrix
from objssl.objectives.base import Objective

__all__ = ["BoxPairTerm", "box_rows", "pairwise_box_loss"]


def box_rows(module: nn.Module, x: Tensor, used: Tensor) -> Tensor:
    """``module`` on the used rows of ``x [B, K, ...]`` only (BatchNorm sees no padding); zeros elsewhere."""
    B, K = used.shape
    rows = torch.nonzero(used.reshape(-1)).reshape(-1)
    y = module(x.reshape(B * K, *x.shape[2:])[rows])
    return y.new_zeros(B * K, y.shape[-1]).index_copy(0, rows, y).view(B, K, -1)


def pairwise_box_loss(
    criterion: nn.Module, preds: list[Tensor], targets: list[Tensor], used: list[Tensor], ids: Tensor
) -> tuple[Tensor, Tensor]:
    """View 1 against each other view: ``(summed loss, mean positives per image per pair)``."""
    loss = torch.zeros((), device=ids.device)
    positives = torch.zeros((), device=ids.device)
    for b in range(1, len(preds)):
        corr = correspondence_matrix(ids, used[0], ids, used[b])
        loss = loss + criterion(preds[0], targets[0], preds[b], targets[b], corr)
        positives = positives + corr.sum((1, 2)).mean()
    return loss, positives.detach() / (len(preds) - 1)


class BoxPairTerm(Objective):
    """A term that embeds each view's boxes (:meth:`embed`) and regresses view 1's predictions on every
    other view's target projections of the same proposals (1–2, 1–3, and 1–4 for SoCo*), symmetrised.

    Subclasses define ``embed(feats, branch, view, boxes [B, K, 4], mask [B, K]) -> (z [B, K, D], used
    [B, K])`` and set ``self.criterion``; the online predictor is the head ``predictor``.
    """

    needs = frozenset({"views", "boxes"})
    all_views = True

    def embed(self, feats: Any, branch: str, view: int, boxes: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must define embed()")

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        boxes, mask, ids = batch["boxes"], batch["box_mask"].bool(), batch["box_ids"]
        views = range(len(batch["views"]))
        online = [self.embed(feats, "online", v, boxes[v], mask) for v in views]
        target = [feats.memo("target", v, self.name, lambda v=v: self.embed(feats, "target", v, boxes[v], mask))
                  for v in views]
        predictor = feats.heads("online", self.name)["predictor"]
        preds = [box_rows(predictor, z, used) for z, used in online]
        loss, positives = pairwise_box_loss(self.criterion, preds, [z for z, _ in target], [u for _, u in online], ids)
        return {"loss": loss, "positives_per_image": positives}
