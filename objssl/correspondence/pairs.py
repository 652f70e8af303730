"""Stage 2d: the top RoI pairs of every (image, neighbour) pair from one batched matmul + topk.

ORL (``ORL:openselfsup/models/correspondence.py``): cosine matrix between the query image's and the
neighbour's box embeddings, flattened, top ``max(1, int(ratio * B_query))`` entries, each a (query
box, neighbour box) pair; no mutual check, no one-to-one constraint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["pair_count", "top_pairs", "top_pairs_batched"]


def pair_count(num_query_boxes: int, ratio: float) -> int:
    """``max(1, int(ratio * B))`` pairs for a query with ``B >= 1`` boxes; 0 without boxes."""
    return max(1, int(ratio * num_query_boxes)) if num_query_boxes > 0 else 0


def top_pairs(query: torch.Tensor, neighbour: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One (image, neighbour) pair: ``query [Bq, C]``, ``neighbour [Bn, C]`` (L2-normalised) →
    ``(int64 [P, 2] (query box, neighbour box), float32 [P] cosines)``, best first."""
    p = pair_count(query.shape[0], ratio) if neighbour.shape[0] else 0
    if p == 0:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0)
    sim = query.float() @ neighbour.float().T
    scores, flat = sim.flatten().topk(p)
    return torch.stack([flat // sim.shape[1], flat % sim.shape[1]], 1), scores


def _pad(rows: Sequence[torch.Tensor], length: int, dim: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dim)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r.float()
    return out


def top_pairs_batched(
    queries: Sequence[torch.Tensor], neighbours: Sequence[Sequence[torch.Tensor]], ratio: float,
    device: str | torch.device = "cpu",
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """:func:`top_pairs` for many images at once: ``queries[i] [Bq_i, C]``,
    ``neighbours[i][s] [Bn_is, C]`` → ``[i][s] = (pairs [P, 2], scores [P])``.

    Embeddings are zero-padded to the largest box count; padded entries of the cosine tensor are
    ``-inf`` so topk never picks them.
    """
    n = len(queries)
    if n == 0:
        return []
    k = len(neighbours[0])
    dim = next((t.shape[1] for t in queries if t.numel()), None)
    if dim is None:
        dim = next((t.shape[1] for row in neighbours for t in row if t.numel()), 1)
    bq = max(1, max(t.shape[0] for t in queries))
    bn = max(1, max(t.shape[0] for row in neighbours for t in row))
    q = _pad(queries, bq, dim).to(device)  # [n, bq, C]
    nb = _pad([t for row in neighbours for t in row], bn, dim).to(device).view(n, k, bn, dim)
    sim = torch.einsum("iqc,ikbc->ikqb", q, nb)  # [n, k, bq, bn]
    q_len = torch.tensor([t.shape[0] for t in queries], device=device)
    n_len = torch.tensor([[t.shape[0] for t in row] for row in neighbours], device=device)
    valid = (torch.arange(bq, device=device)[None, None, :, None] < q_len[:, None, None, None]) & (
        torch.arange(bn, device=device)[None, None, None, :] < n_len[:, :, None, None])
    sim = sim.masked_fill(~valid, float("-inf")).flatten(2)
    counts = [[pair_count(queries[i].shape[0], ratio) if n_len[i, s] > 0 else 0 for s in range(k)]
              for i in range(n)]
    p_max = max(max(row) for row in counts)
    if p_max == 0:
        empty = (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0))
        return [[empty] * k for _ in range(n)]
    scores, flat = sim.topk(p_max, dim=2)
    scores, flat = scores.cpu(), flat.cpu()
    out = []
    for i in range(n):
        row = []
        for s in range(k):
            p = counts[i][s]
            f = flat[i, s, :p]
            row.append((torch.stack([f // bn, f % bn], 1), scores[i, s, :p].float()))
        out.append(row)
    return out
