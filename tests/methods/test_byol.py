import torch
from PIL import Image

from objssl import create_backbone, create_method
from objssl.methods import BYOL


def _method(**kw):
    torch.manual_seed(0)
    return create_method("byol", create_backbone("test_resnet"), proj_hidden_dim=32, proj_dim=16,
                         pred_hidden_dim=32, image_size=64, **kw)


def test_parts_and_eager_target():
    m = _method()
    assert isinstance(m, BYOL)
    assert set(m.online) == {"backbone", "byol_global"}
    assert set(m.online["byol_global"]) == {"projector", "predictor"}
    assert set(m.target) == {"backbone", "byol_global"}
    assert set(m.target["byol_global"]) == {"projector"}  # no predictor in the target
    keys = m.state_dict().keys()
    assert any(k.startswith("online.backbone.model.") for k in keys)
    assert any(k.startswith("target.backbone.model.") for k in keys)
    assert all(not p.requires_grad for p in m.target.parameters())
    # the target starts as an exact copy
    for (k, a), b in zip(m.online["byol_global"]["projector"].state_dict().items(),
                         m.target["byol_global"]["projector"].state_dict().values()):
        assert torch.equal(a, b), k


def test_forward_backward_trains_online_only():
    m = _method()
    batch = {"views": [torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)]}
    out = m(batch)
    assert out["loss"].ndim == 0 and 0 <= out["loss"].item() <= 8
    out["loss"].backward()
    assert all(p.grad is not None for p in m.online.parameters())
    assert all(p.grad is None for p in m.target.parameters())


def test_update_target_moves_towards_online():
    m = _method()
    with torch.no_grad():
        for p in m.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target.parameters()]
    mom = m.update_target(0, 10)
    assert mom == 0.99
    for b, t, o in zip(before, m.target.parameters(), list(m.online["backbone"].parameters()) + list(m.online["byol_global"]["projector"].parameters())):
        torch.testing.assert_close(t, 0.99 * b + 0.01 * o)


def test_transform_gives_two_normalised_views():
    m = _method()
    img = Image.fromarray((torch.rand(80, 120, 3) * 255).byte().numpy())
    sample = m.build_transform({})(img)
    v1, v2 = sample["views"]
    assert v1.shape == v2.shape == (3, 64, 64) and v1.dtype == torch.float32
    assert v1.min() < 0 < v1.max()  # ImageNet-normalised
    torch.manual_seed(1)
    a = m.build_transform({})(img)["views"][0]
    torch.manual_seed(1)
    b = m.build_transform({})(img)["views"][0]
    assert torch.equal(a, b)  # all randomness comes from torch's RNG
