"""ORL's RoI terms: their losses against values computed by hand from the method's own modules, the one
shared projector and target, one predictor each, and the whole ORL sum."""

import pytest
import torch
import torch.nn.functional as F

import objssl  # noqa: F401 - registers the built-in terms
from objssl.backbones import create_backbone
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BYOLGlobal, ORLInterRoI, ORLIntraRoI

SMALL = dict(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=12)


def _method(*terms):
    torch.manual_seed(0)
    return ObjectiveMethod(create_backbone("test_resnet"), [(t(**SMALL), 1.0) for t in terms], image_size=32)


def _batch(b=4):
    g = torch.Generator().manual_seed(1)
    return {"views": [torch.randn(b, 3, 32, 32, generator=g) for _ in range(2)],
            "roi_intra": torch.randn(b, 2, 3, 16, 16, generator=g),
            "roi_inter": torch.randn(b, 2, 3, 16, 16, generator=g)}


def _by_hand(method, predictor, x_a, x_b):
    """(2 - 2cos(q(g(f(a))), g'(f'(b)))) + the same with a and b swapped, each a mean over the batch."""
    on, tg = method.online, method.target

    def online(x):
        return predictor(on["byol_global"]["projector"](on["backbone"](x).pooled))

    def target(x):
        with torch.no_grad():
            return tg["byol_global"]["projector"](tg["backbone"](x).pooled)

    def one_way(p, z):
        return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(1)).mean()

    return one_way(online(x_a), target(x_b)) + one_way(online(x_b), target(x_a))


def test_each_roi_term_is_the_symmetrised_byol_loss_of_its_patch_pair_through_its_own_predictor():
    method = _method(BYOLGlobal, ORLIntraRoI, ORLInterRoI)
    batch = _batch()
    out = method(batch)
    on = method.online
    intra = _by_hand(method, on["orl_intra_roi"]["predictor"], batch["roi_intra"][:, 0], batch["roi_intra"][:, 1])
    inter = _by_hand(method, on["orl_inter_roi"]["predictor"], batch["roi_inter"][:, 0], batch["roi_inter"][:, 1])
    glob = _by_hand(method, on["byol_global"]["predictor"], batch["views"][0], batch["views"][1])
    torch.testing.assert_close(out["loss_orl_intra_roi"], intra.detach())
    torch.testing.assert_close(out["loss_orl_inter_roi"], inter.detach())
    torch.testing.assert_close(out["loss_byol_global"], glob.detach())
    # weights 1 / 1 / 1, summed
    torch.testing.assert_close(out["loss"], glob + intra + inter)
    intra, inter = float(intra.detach()), float(inter.detach())
    assert 0 < intra < 8 and 0 < inter < 8 and intra != pytest.approx(inter)


def test_the_roi_terms_share_byol_globals_projector_and_target_with_a_predictor_each():
    method = _method(BYOLGlobal, ORLIntraRoI, ORLInterRoI)
    assert set(method.online) == {"backbone", "byol_global", "orl_intra_roi", "orl_inter_roi"}
    assert set(method.online["orl_intra_roi"]) == set(method.online["orl_inter_roi"]) == {"predictor"}
    assert set(method.target) == {"backbone", "byol_global"} and set(method.target["byol_global"]) == {"projector"}
    p_intra, p_inter = method.online["orl_intra_roi"]["predictor"], method.online["orl_inter_roi"]["predictor"]
    assert p_intra is not p_inter and p_intra.layers[0].in_features == 8 and p_intra.layers[0].out_features == 12
    # the intra loss trains the shared projector and its own predictor, not the inter one's
    batch = _batch()
    intra = method.objectives["orl_intra_roi"]
    from objssl.objectives import StepFeatures

    feats = StepFeatures({"online": method.online, "target": method.target}, batch["views"], maps=[], pooled=True,
                         neck=False)
    intra(batch, feats)["loss"].backward()
    grads = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    assert grads(method.online["byol_global"]["projector"]) and grads(p_intra)
    assert not grads(p_inter) and not grads(method.online["byol_global"]["predictor"])


def test_a_roi_term_alone_builds_the_projector_under_byol_globals_name():
    method = _method(ORLIntraRoI)
    assert set(method.online["byol_global"]) == {"projector"} and set(method.target["byol_global"]) == {"projector"}
    batch = _batch()
    out = method(batch)
    expected = _by_hand(method, method.online["orl_intra_roi"]["predictor"], batch["roi_intra"][:, 0],
                        batch["roi_intra"][:, 1])
    torch.testing.assert_close(out["loss"], expected)


def test_a_patch_field_of_the_wrong_shape_is_named():
    method = _method(ORLIntraRoI)
    batch = {**_batch(), "roi_intra": torch.randn(4, 3, 16, 16)}
    with pytest.raises(ValueError, match=r"roi_intra.*\[B, 2, 3, P, P\]"):
        method(batch)
