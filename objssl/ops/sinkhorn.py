"""Entropic optimal transport by log-domain Sinkhorn iterations (UniVIP's instance–instance plan).

The plan of ``min_P <P, C> - eps H(P)`` subject to ``P 1 = a`` and ``P^T 1 = b`` is
``P = exp((-C + u_i + v_j) / eps)``; the dual potentials ``u``, ``v`` are updated in the log domain
(a log-sum-exp per row, then per column), which stays finite for small ``eps`` where the plain
matrix-scaling form under- or overflows.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sinkhorn_log", "normalize_marginal"]

#: costs are clamped to +-(this * eps): an infinite cost would make a log-sum-exp infinite, and float32
#: keeps ~1e-5 precision in the plan only while the exponents (-C + u + v) / eps stay in the hundreds.
#: Entries 50 eps apart weigh e^-50 ~ 2e-22 relative to each other, so a clamp only changes the plan of
#: rows or columns whose costs all lie beyond it (never for a cosine cost in [0, 2] with eps >= 0.04)
COST_LIMIT_EPS = 50.0
#: added to a marginal before its log, so an empty bin gives a finite potential (plan mass ~ this)
LOG_FLOOR = 1e-8


def normalize_marginal(weights: Tensor) -> Tensor:
    """Non-negative ``weights [..., K]`` scaled to sum to 1 along the last axis, in float32.

    NaN and negative entries count as 0 and infinite ones as the largest finite float; a vector
    with no mass left becomes uniform, so every marginal of a batch has the same total mass.
    """
    w = torch.nan_to_num(weights.float(), nan=0.0, posinf=torch.finfo(torch.float32).max, neginf=0.0).clamp_min(0)
    # scaling by the largest entry first keeps the sum finite when entries are near the float maximum
    w = w / w.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    total = w.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / w.shape[-1])
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(torch.float32).tiny), uniform)


def sinkhorn_log(cost: Tensor, a: Tensor | None = None, b: Tensor | None = None, *, eps: float = 0.1,
                 iters: int = 50) -> Tensor:
    """The entropic transport plan of ``cost`` between marginals ``a`` (rows) and ``b`` (columns).

    Args:
        cost: ``[B, M, N]`` or ``[M, N]``, any float dtype (computed in float32; NaN counts as +inf,
            and costs are clamped to +-:data:`COST_LIMIT_EPS` × ``eps``).
        a: ``[B, M]`` / ``[M]`` row marginal; ``b``: ``[B, N]`` / ``[N]`` column marginal. Both
            are made non-negative and normalised to sum to 1 (:func:`normalize_marginal`), so they
            always have equal mass; None means uniform.
        eps: entropic regularisation (> 0); iters: Sinkhorn iterations (>= 1), each a row then a
            column update.

    Returns:
        float32 plan of ``cost``'s shape, finite, without gradient (the plan is a constant weight).
    """
    if eps <= 0:
        raise ValueError(f"sinkhorn_log: eps must be > 0, got {eps}")
    if iters < 1:
        raise ValueError(f"sinkhorn_log: iters must be >= 1, got {iters}")
    if cost.ndim not in (2, 3):
        raise ValueError(f"sinkhorn_log: cost must be [M, N] or [B, M, N], got {tuple(cost.shape)}")
    single = cost.ndim == 2
    with torch.no_grad():
        c = cost.detach().float()
        limit = COST_LIMIT_EPS * eps
        c = torch.nan_to_num(c, nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)
        if single:
            c = c[None]
        B, M, N = c.shape
        log_a = _log_marginal(a, B, M, c.device, "a")
        log_b = _log_marginal(b, B, N, c.device, "b")
        u = torch.zeros(B, M, device=c.device)
        v = torch.zeros(B, N, device=c.device)
        for _ in range(iters):
            u = eps * (log_a - torch.logsumexp((-c + v[:, None, :]) / eps, dim=2))
            v = eps * (log_b - torch.logsumexp((-c + u[:, :, None]) / eps, dim=1))
        plan = torch.exp((-c + u[:, :, None] + v[:, None, :]) / eps)
    return plan[0] if single else plan


def _log_marginal(weights: Tensor | None, batch: int, k: int, device: torch.device, name: str) -> Tensor:
    if weights is None:
        return torch.full((batch, k), -torch.log(torch.tensor(float(k))).item(), device=device)
    w = weights.detach().to(device)
    if w.ndim == 1:
        w = w[None].expand(batch, -1)
    if w.shape != (batch, k):
        raise ValueError(f"sinkhorn_log: {name} must be [{k}] or [{batch}, {k}], got {tuple(weights.shape)}")
    return torch.log(normalize_marginal(w) + LOG_FLOOR)
