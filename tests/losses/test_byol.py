import pytest
import torch

from objssl.losses import BYOLLoss, byol_loss


def test_hand_computed_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [3.0, 4.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0], [4.0, 3.0]])
    # per row: 2-2*0=2, 2-2*1=0, 2-2*(-1)=4, 2-2*(24/25)=0.08
    assert byol_loss(p, z).item() == pytest.approx((2 + 0 + 4 + 0.08) / 4, abs=1e-6)


def test_scale_invariant_and_symmetric_sum():
    torch.manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(5, 7) for _ in range(4))
    assert byol_loss(3 * p1, 0.5 * z2).item() == pytest.approx(byol_loss(p1, z2).item(), abs=1e-6)
    total = BYOLLoss()(p1, p2, z1, z2)
    assert total.item() == pytest.approx((byol_loss(p1, z2) + byol_loss(p2, z1)).item(), abs=1e-6)


def test_gradient_flows_to_prediction_only_when_target_detached():
    p = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, 4, requires_grad=True)
    byol_loss(p, z.detach()).backward()
    assert p.grad is not None and z.grad is None


def test_zero_vector_is_finite_and_shapes_checked():
    assert torch.isfinite(byol_loss(torch.zeros(2, 3, dtype=torch.bfloat16), torch.ones(2, 3)))
    with pytest.raises(ValueError, match="prediction"):
        byol_loss(torch.randn(2, 3), torch.randn(2, 4))
