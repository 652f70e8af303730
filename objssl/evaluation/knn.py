"""Weighted k-nearest-neighbour classification on frozen features (InstDisc / DINO's ``knn_classifier``).

Features are L2-normalised; the similarity is the cosine (a matrix product); each of the ``k``
most similar train images votes for its class with weight ``exp(s / T)``; the classes are ranked
by their summed votes. Top-1 / top-5 are in percent. Computed in chunks of validation images, so
the memory is ``chunk × N_train``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from objssl.errors import DataError

__all__ = ["knn_class_scores", "knn_accuracy", "top_k_accuracy"]


@torch.no_grad()
def knn_class_scores(train: Tensor, train_labels: Tensor, query: Tensor, *, num_classes: int, k: int = 20,
                     temperature: float = 0.07, chunk: int = 1024) -> Tensor:
    """``[N_query, num_classes]`` summed ``exp(s/T)`` votes of each query's ``k`` nearest train images."""
    if train.shape[0] < k:
        raise DataError(f"kNN with k={k} needs at least {k} train images, there are {train.shape[0]}")
    train = torch.nn.functional.normalize(train.float(), dim=1)
    query = torch.nn.functional.normalize(query.float(), dim=1)
    labels = train_labels.long().to(train.device)
    out = []
    for start in range(0, query.shape[0], chunk):
        sims = query[start:start + chunk] @ train.T
        top, idx = sims.topk(k, dim=1)
        weights = (top / temperature).exp()
        votes = torch.zeros(sims.shape[0], num_classes, device=train.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[idx], weights)
        out.append(votes)
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def top_k_accuracy(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}`` (a k larger than the number of classes counts every class)."""
    labels = labels.long().to(scores.device)
    order = scores.argsort(dim=1, descending=True)
    out = {}
    for k in ks:
        hit = (order[:, : min(k, scores.shape[1])] == labels[:, None]).any(dim=1)
        out[f"top{k}"] = 100.0 * hit.float().mean().item() if len(labels) else float("nan")
    return out


def knn_accuracy(train: Tensor, train_labels: Tensor, val: Tensor, val_labels: Tensor, *, num_classes: int,
                 k: int = 20, temperature: float = 0.07) -> dict[str, float]:
    scores = knn_class_scores(train, train_labels, val, num_classes=num_classes, k=k, temperature=temperature)
    return top_k_accuracy(scores, val_labels)
