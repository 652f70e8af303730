"""Log-domain Sinkhorn: the transport plan's marginals, a reference check against POT, and finiteness on
degenerate inputs (with UniVIP's instance–instance loss built on it)."""

import math

import pytest
import torch

from objssl.objectives.univip_instance_ot import instance_ot_loss, scene_marginals
from objssl.ops import normalize_marginal, sinkhorn_log


def _problem(seed, B, M, N):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(B, M, N, generator=g) * 2
    a = torch.rand(B, M, generator=g) + 0.1
    b = torch.rand(B, N, generator=g) + 0.1
    return cost, a, b


def test_plan_has_the_normalised_marginals():
    cost, a, b = _problem(0, 3, 5, 4)
    plan = sinkhorn_log(cost, a, b, eps=0.1, iters=500)
    assert plan.dtype == torch.float32 and plan.shape == (3, 5, 4)
    torch.testing.assert_close(plan.sum(2), a / a.sum(1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(1), b / b.sum(1, keepdim=True), atol=1e-5, rtol=0)


def test_uniform_plan_of_a_constant_cost_and_2x2_by_hand():
    plan = sinkhorn_log(torch.full((3, 3), 0.7))
    torch.testing.assert_close(plan, torch.full((3, 3), 1 / 9))
    # cost 1 - I, uniform marginals: diagonal x, off-diagonal y, x + y = 1/2, x / y = e^(1/eps)
    plan = sinkhorn_log(1 - torch.eye(2), eps=0.1, iters=50)
    x = 0.5 * math.exp(10) / (1 + math.exp(10))
    torch.testing.assert_close(plan, torch.tensor([[x, 0.5 - x], [0.5 - x, x]]), atol=1e-7, rtol=0)


@pytest.mark.parametrize("seed,B,M,N,eps", [(0, 1, 4, 4, 0.1), (1, 2, 3, 5, 0.1), (2, 1, 8, 8, 0.5), (3, 3, 1, 4, 0.1)])
def test_matches_pot(seed, B, M, N, eps):
    ot = pytest.importorskip("ot", reason="needs POT (pip install pot; in objssl[dev])")
    cost, a, b = _problem(seed, B, M, N)
    plan = sinkhorn_log(cost, a, b, eps=eps, iters=2000)
    for i in range(B):
        an, bn = (a[i] / a[i].sum()).double().numpy(), (b[i] / b[i].sum()).double().numpy()
        ref = ot.bregman.sinkhorn_log(an, bn, cost[i].double().numpy(), reg=eps, numItermax=5000, stopThr=1e-10)
        assert abs(plan[i].double().numpy() - ref).max() <= 1e-5


def test_marginal_normalisation_is_total_mass_one_or_uniform():
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, float("nan"), 3.0], [-1.0, float("inf"), 0.0], [1e-39, 0.0, 0.0]])
    out = normalize_marginal(w)
    torch.testing.assert_close(out.sum(1), torch.ones(4))
    torch.testing.assert_close(out[0], torch.full((3,), 1 / 3))
    torch.testing.assert_close(out[1], torch.tensor([0.25, 0.0, 0.75]))
    torch.testing.assert_close(out[2], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.isfinite(out).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_log(torch.zeros(2, 2), eps=0)
    with pytest.raises(ValueError, match="iters"):
        sinkhorn_log(torch.zeros(2, 2), iters=0)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn_log(torch.zeros(2))
    with pytest.raises(ValueError, match="a must be"):
        sinkhorn_log(torch.zeros(2, 3, 3), torch.ones(2))


def _cases(dtype):
    big, tiny = torch.finfo(dtype).max / 8, torch.finfo(dtype).tiny
    g = torch.Generator().manual_seed(0)
    r = torch.randn(2, 4, 8, generator=g)
    same = r[:, :1].expand(2, 4, 8).clone()
    return {
        "identical_instances": (same, same.clone()),
        "zero_vectors": (torch.zeros(2, 4, 8), r.clone()),
        "both_zero": (torch.zeros(2, 4, 8), torch.zeros(2, 4, 8)),
        "huge_norms": (r * big, r.flip(1) * big),
        "tiny_norms": (r * tiny, r.flip(1) * tiny),
        "mixed_norms": (r * torch.tensor([big, 1.0, tiny, 0.0]).view(1, 4, 1), r.flip(1)),
        "k_is_1": (r[:, :1], r[:, 1:2]),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fuzz_plan_loss_and_gradients_stay_finite(dtype):
    for case, (online, target) in _cases(dtype).items():
        online = online.to(dtype).requires_grad_(True)
        target = target.to(dtype)
        scenes = [online.detach()[:, 0], online.detach()[:, -1]]
        a, b = scene_marginals(online.detach(), target, scenes, [target[:, 0], target[:, -1]])
        for marg in ((a, b), (None, None), (torch.zeros_like(a), torch.zeros_like(b))):
            loss = instance_ot_loss(online, target, *[m if m is not None else torch.ones_like(a) for m in marg])
            assert loss.dtype == torch.float32 and torch.isfinite(loss), (case, dtype, loss)
            assert -1 - 1e-4 <= float(loss.detach()) <= 1 + 1e-4, (case, dtype, loss)
            (grad,) = torch.autograd.grad(loss, online)
            assert torch.isfinite(grad).all(), (case, dtype)
    # infinite and NaN costs, in every dtype
    cost = torch.tensor([[0.0, float("inf")], [float("-inf"), float("nan")]]).to(dtype)
    for c in (cost, cost[None].expand(3, 2, 2), torch.full((1, 1), float("inf"), dtype=dtype)):
        plan = sinkhorn_log(c)
        assert plan.dtype == torch.float32 and torch.isfinite(plan).all()
        torch.testing.assert_close(plan.sum((-1, -2)), torch.ones(plan.shape[:-2]), atol=1e-4, rtol=0)
