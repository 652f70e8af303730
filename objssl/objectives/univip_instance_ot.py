"""``univip_instance_ot``: UniVIP's instance–instance term, optimal transport between the K online
instance predictions ``o_m`` and the K target instance projections ``t_n`` of an image (Li et al.,
CVPR 2022, §3).

On L2-normalised vectors (eps in the norm): cost ``C_mn = 1 − cos(o_m, t_n)``; marginals
(``marginals="scene"``, the paper's rule) ``a_m = max(0, cos(o_m, (ẑ_t1 + ẑ_t2)/2))`` with the target
scene projections and ``b_n = max(0, cos(t_n, (p̂_o1 + p̂_o2)/2))`` with the online scene predictions,
each normalised to sum to 1 (``"uniform"``: 1/K); plan ``P`` = log-domain Sinkhorn (ε 0.1, 50 iterations)
without gradient; loss ``−Σ_mn cos(o_m, t_n)·P_mn``, averaged over the batch (in ``[−1, 1]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from objssl.objectives.univip_heads import UniVIPTerm
from objssl.ops import sinkhorn_log
from objssl.registry import OBJECTIVES

__all__ = ["UniVIPInstanceOT", "instance_ot_loss", "scene_marginals", "unit", "NORM_EPS"]

#: eps of every L2 normalisation here: a zero vector gets cosines 0, not NaN, and the normalisation's
#: gradient stays below 1/eps = 1e4, which float16 holds (features have norms far above it)
NORM_EPS = 1e-4
MARGINALS = ("scene", "uniform")


def unit(x: Tensor) -> Tensor:
    """``x`` L2-normalised along the last axis in float32, finite for any finite input: vectors with an
    entry above 1 are scaled down by their largest entry first (their squares would overflow), and
    the norm has an eps (a zero vector stays zero)."""
    x = x.float()
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    return F.normalize(x / scale, dim=-1, eps=NORM_EPS)


def scene_marginals(online: Tensor, target: Tensor, online_scenes: list[Tensor], target_scenes: list[Tensor]) -> tuple[Tensor, Tensor]:
    """UniVIP's marginals ``(a [B, K] over online instances, b [B, K] over target instances)``, not yet
    normalised: each instance's non-negative cosine with the mean of the other branch's normalised scenes."""
    def mean_scene(scenes: list[Tensor]) -> Tensor:
        return torch.stack([unit(s) for s in scenes]).mean(0)

    o, t = unit(online), unit(target)
    a = (o * mean_scene(target_scenes)[:, None]).sum(-1).clamp_min(0)
    b = (t * mean_scene(online_scenes)[:, None]).sum(-1).clamp_min(0)
    return a, b


def instance_ot_loss(online: Tensor, target: Tensor, a: Tensor, b: Tensor, *, eps: float = 0.1,
                     iters: int = 50) -> Tensor:
    """``−mean_b Σ_mn cos(online_bm, target_bn)·P_bmn`` for ``online, target [B, K, D]`` and marginals
    ``a, b [B, K]`` (normalised to equal mass inside :func:`objssl.ops.sinkhorn_log`); float32."""
    cos = unit(online) @ unit(target).transpose(1, 2)
    plan = sinkhorn_log(1 - cos, a, b, eps=eps, iters=iters)
    return -(cos * plan).sum((1, 2)).mean()


@OBJECTIVES.register("univip_instance_ot")
class UniVIPInstanceOT(UniVIPTerm):
    """Args: eps (0.1) and iters (50) of the Sinkhorn solver; marginals (``scene`` or ``uniform``); and
    those of the ``univip`` group (:class:`objssl.objectives.univip_heads.UniVIPTerm`)."""

    name = "univip_instance_ot"

    def __init__(self, *, eps: float = 0.1, iters: int = 50, marginals: str = "scene", proj_hidden_dim: int = 4096,
                 proj_dim: int = 256, pred_hidden_dim: int = 4096, head_norm: str = "bn",
                 instance_size: int = 96) -> None:
        super().__init__(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim,
                         head_norm=head_norm, instance_size=instance_size)
        if eps <= 0 or iters < 1:
            raise ValueError(f"{self.name}: eps must be > 0 and iters >= 1, got eps={eps}, iters={iters}")
        if marginals not in MARGINALS:
            raise ValueError(f"{self.name}: marginals must be one of {', '.join(MARGINALS)}, got {marginals!r}")
        self.eps, self.iters, self.marginals = float(eps), int(iters), marginals

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        online = self.online_instances(batch, feats)
        target = self.target_instances(batch, feats)
        mask = batch["box_mask"].float()
        if self.marginals == "scene":
            # weights only (the plan is a constant); detached, not no_grad, so the memoised scene
            # predictions keep their graph for any other term that reads them
            a, b = scene_marginals(online.detach(), target, [s.detach() for s in self.online_scenes(feats)],
                                   self.target_scenes(feats))
        else:
            a = b = torch.ones_like(mask)
        # padded instances (mask False) get no mass
        return {"loss": instance_ot_loss(online, target, a * mask, b * mask, eps=self.eps, iters=self.iters)}
