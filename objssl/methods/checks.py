"""``check_objective``: the checks every objective term must pass, for plugin authors and the test suite.

It lives with the methods (not in :mod:`objssl.objectives`) because it builds a method and a batch, both
of which sit above the objectives in the layer order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from objssl.methods.arguments import accepted_keys

__all__ = ["check_objective", "tiny_kwargs"]


def tiny_kwargs(term_cls: type, **given: Any) -> dict[str, Any]:
    """``given`` plus small sizes for every head width the term takes (``*_dim``, ``*_channels``: 16;
    ``num_prototypes``: 8), so the check runs in a second on one core."""
    small = {}
    for key in accepted_keys(term_cls)[0]:
        if key.endswith(("_dim", "_channels")):
            small[key] = 16
        elif key == "num_prototypes":
            small[key] = 8
    return {**small, **given}


def _neighbour_batch(image_size: int, n: int) -> dict[str, Any]:
    """ORL's stage-3 batch (``neighbours``): each demo image with the next one as its neighbour, random
    proposals as boxes and random stored pairs between them, through ORL's sample pipeline."""
    from objssl.data import demo_images, load_rgb
    from objssl.data.roi_pair_events import collate_neighbour_pairs
    from objssl.data.roi_pair_views import RoIPairViews
    from objssl.proposals import RandomSource

    views = RoIPairViews(image_size=image_size, patch_size=max(8, image_size // 2))
    images = [load_rgb(p) for p in demo_images()[:n]]
    boxes = [RandomSource(n=8, scale=(0.15, 0.6))(np.array(img)).boxes.round() for img in images]
    samples = []
    for i, img in enumerate(images):
        torch.manual_seed(i)
        j = (i + 1) % len(images)
        pick = torch.randint(len(boxes[i]), (3,)), torch.randint(len(boxes[j]), (3,))
        samples.append(views(img, boxes[i], images[j], (boxes[i][pick[0]], boxes[j][pick[1]])))
    return collate_neighbour_pairs(samples)


def _batch(needs: frozenset[str], image_size: int, n: int = 4) -> tuple[str, dict[str, Any]]:
    from objssl.data import demo_images, load_rgb
    from objssl.data.collate import collate_views
    from objssl.data.views import BoxAwareViews
    from objssl.proposals import RandomSource

    unsupported = sorted(set(needs) - {"views", "boxes", "overlap", "instances", "neighbours"})
    if unsupported:
        raise ValueError(f"check_objective: no objssl view pipeline provides {', '.join(unsupported)}, "
                         "so a term that needs it cannot be checked on a real batch here")
    others = sorted(set(needs) - {"views", "neighbours"})
    if "neighbours" in needs and others:
        # ORL's data set gives whole-image views and RoI patch pairs, no boxes carried through views
        raise ValueError(f"check_objective: no objssl data pipeline provides neighbours together with "
                         f"{', '.join(others)}, so the term cannot be checked on a real batch here")
    if "neighbours" in needs:
        return "orl", _neighbour_batch(image_size, n)
    preset = "univip" if "instances" in needs else "soco" if "boxes" in needs else "slotcon"
    views = BoxAwareViews.from_preset(preset, size=image_size)
    samples = []
    for i, path in enumerate(demo_images()[:n]):
        torch.manual_seed(i)
        img = load_rgb(path)
        samples.append(views(img, {"path": path}, boxes=RandomSource(n=40, scale=(0.15, 0.6))(np.array(img)).boxes))
    return preset, collate_views(samples)


def check_objective(term_cls: type, *, backbone: str = "test_resnet", image_size: int = 64, **kwargs: Any) -> dict[str, float]:
    """Build a one-term method around ``term_cls(**kwargs)`` (small heads by default) and check it:

    forward on a real batch of the views it needs gives a finite scalar loss; backward reaches the backbone
    and every head it owns and nothing in the target; the EMA update moves the target heads; the state
    dict loads strictly into a second build and a state-dict round trip reproduces the loss. Raises
    AssertionError naming the failure; returns the logged scalars.
    """
    from objssl.backbones import create_backbone
    from objssl.methods.objective_method import ObjectiveMethod

    def build(seed: int) -> ObjectiveMethod:
        torch.manual_seed(seed)
        term = term_cls(**tiny_kwargs(term_cls, **kwargs))
        return ObjectiveMethod(create_backbone(backbone), [(term, 1.0)], image_size=image_size)

    method = build(0)
    name = term_cls.name
    assert name and name in method.objectives, f"{term_cls.__name__}: set the class attribute name"
    _, batch = _batch(frozenset(term_cls.needs), image_size)
    out = method(batch)
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), f"{name}: loss must be a finite scalar, got {loss}"
    assert all(v.numel() == 1 for v in out.values()), f"{name}: every logged value must be a scalar"
    loss.backward()
    owned = {"backbone": method.online["backbone"]}
    for group in (name, term_cls.shared_group):
        if group in method.online:  # each head of the group on its own: one dead head is a bug
            owned.update({f"{group}.{head}": module for head, module in method.online[group].items()})
    for where, module in owned.items():
        grads = [p.grad for p in module.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name}: no gradient reaches online.{where}"
    assert all(p.grad is None for p in method.target.parameters()), f"{name}: gradient in the EMA target"
    for head in term_cls.target_heads:
        assert head in method.target[name], f"{name}: target head {head!r} missing"
    with torch.no_grad():
        for p in method.online.parameters():
            p.add_(0.01)
    before = [p.clone() for p in method.target.parameters()]
    momentum = method.update_target(0, 10)
    moved = [not torch.equal(b, p) for b, p in zip(before, method.target.parameters())]
    assert 0 < momentum < 1 and all(moved), f"{name}: the EMA update left target parameters unchanged"

    method.eval()
    state = {k: v.clone() for k, v in method.state_dict().items()}  # before a forward moves term state (centres)
    with torch.no_grad():
        reference = method(batch)["loss"]
    twin = build(1)
    twin.load_state_dict(state, strict=True)
    twin.eval()
    with torch.no_grad():
        again = twin(batch)["loss"]
    assert torch.allclose(reference, again), f"{name}: loss after a state-dict round trip differs ({reference} vs {again})"
    return {k: float(v.detach()) for k, v in out.items()}
