"""What SoCo's box terms share: heads on used boxes only, and view 1's boxes against every other view's.

Two batch layouts (:class:`objssl.data.views.BoxAwareViews` ``box_sets``): ``shared``, one box set for
every view (``box_mask [B, K]``); ``per_pair``, one set per pair of view 1 with view ``b`` (``box_mask``,
``box_ids [B, P, K]``, view 1's boxes ``boxes[0] [B, P, K, 4]``), where pair ``b - 1``'s view-1 boxes
meet view ``b``'s.
"""

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
        if batch["box_mask"].ndim == 3:
            return self._forward_per_pair(batch, feats)
        boxes, mask, ids = batch["boxes"], batch["box_mask"].bool(), batch["box_ids"]
        views = range(len(batch["views"]))
        online = [self.embed(feats, "online", v, boxes[v], mask) for v in views]
        target = [feats.memo("target", v, self.name, lambda v=v: self.embed(feats, "target", v, boxes[v], mask))
                  for v in views]
        predictor = feats.heads("online", self.name)["predictor"]
        preds = [box_rows(predictor, z, used) for z, used in online]
        loss, positives = pairwise_box_loss(self.criterion, preds, [z for z, _ in target], [u for _, u in online], ids)
        return {"loss": loss, "positives_per_image": positives}

    def _forward_per_pair(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        """Pair ``p``: view 1 with pair ``p``'s boxes against view ``p + 1`` (the layout: module docstring)."""
        boxes, mask, ids = batch["boxes"], batch["box_mask"].bool(), batch["box_ids"]
        predictor = feats.heads("online", self.name)["predictor"]
        loss = torch.zeros((), device=ids.device)
        positives = torch.zeros((), device=ids.device)
        pairs = mask.shape[1]
        for p in range(pairs):
            b, m, i = p + 1, mask[:, p], ids[:, p]
            z0, used0 = self.embed(feats, "online", 0, boxes[0][:, p], m)
            zb, usedb = self.embed(feats, "online", b, boxes[b], m)
            t0, _ = feats.memo("target", 0, f"{self.name}/pair{p}",
                               lambda m=m, p=p: self.embed(feats, "target", 0, boxes[0][:, p], m))
            tb, _ = feats.memo("target", b, self.name, lambda m=m, b=b: self.embed(feats, "target", b, boxes[b], m))
            corr = correspondence_matrix(i, used0, i, usedb)
            loss = loss + self.criterion(box_rows(predictor, z0, used0), t0, box_rows(predictor, zb, usedb), tb, corr)
            positives = positives + corr.sum((1, 2)).mean()
        return {"loss": loss, "positives_per_image": positives.detach() / pairs}
