"""Parameters drawn for the device path are those the loader path draws: same torch RNG calls, same
state afterwards, and the views they give agree with the loader's (up to its uint8 rounding)."""

import pytest
import torch

from objssl.data.device.params import ViewBatch, draw_colour, draw_image_views
from objssl.data.device.pipeline import DeviceView, apply_views
from objssl.data.device.geometry import pad_images
from objssl.data.transforms import (
    BYOL_VIEWS,
    IMAGENET_STD,
    MultiViewTransform,
    ViewAugmentation,
    photometric_transform,
)

AUGS = [ViewAugmentation(**{**a.__dict__, "size": 64}) for a in BYOL_VIEWS]
# trivial factor ranges draw nothing in v2.ColorJitter; blur off draws no coin; solarize always
ODD = ViewAugmentation(size=64, jitter=(0.4, 0.0, 0.3, 0.0), jitter_p=1.0, blur_p=0.0, solarize_p=1.0)


def _state_after(fn, seed):
    torch.manual_seed(seed)
    out = fn()
    return out, torch.random.get_rng_state()


def test_image_views_make_the_loaders_rng_calls(photos):
    mvt = MultiViewTransform.from_augmentations(AUGS)
    for seed, img in enumerate(photos * 2):
        _, loader = _state_after(lambda: mvt(img), seed)
        _, device = _state_after(lambda: draw_image_views(AUGS, tuple(img.shape[-2:])), seed)
        assert torch.equal(loader, device), seed


@pytest.mark.parametrize("aug", [*AUGS, ODD])
def test_colour_draw_makes_the_loaders_rng_calls(photos, aug):
    loader_t = photometric_transform(aug, normalize=False, to_float=False)
    img = photos[0][:, :64, :64]
    for seed in range(12):
        _, loader = _state_after(lambda: loader_t(img), seed)
        params, device = _state_after(lambda: draw_colour(aug), seed)
        assert torch.equal(loader, device), seed
    if aug is ODD:
        assert params.jitter and params.solarize and params.blur_sigma == 0.0
        assert params.factors[1] == 1.0 and params.factors[3] == 0.0  # contrast, hue untouched


def _device_and_loader_views(photos, seeds, method="per_sample", device_seeds=None):
    mvt = MultiViewTransform.from_augmentations(AUGS)
    loader, params = [], []
    for seed, dseed, img in zip(seeds, device_seeds or seeds, photos):
        torch.manual_seed(seed)
        loader.append(mvt(img)["views"])
        torch.manual_seed(dseed)
        params.append(draw_image_views(AUGS, tuple(img.shape[-2:])))
    padded, _ = pad_images(photos)
    batches = [ViewBatch.stack([p[v] for p in params]) for v in range(len(AUGS))]
    device = apply_views(padded, batches, [DeviceView.from_augmentation(a, resize=method) for a in AUGS])
    std = torch.tensor(IMAGENET_STD).reshape(3, 1, 1)
    # differences in [0, 1] pixel units
    return [((device[v] - torch.stack([views[v] for views in loader])) * std).abs() for v in range(len(AUGS))]


def test_same_seed_gives_the_loaders_views(photos):
    # the loader rounds/truncates to uint8 after every colour op; the device path stays float
    for d in _device_and_loader_views(photos, seeds=range(100, 100 + len(photos))):
        assert d.max() <= 6 / 255 and d.mean() <= 2 / 255, (float(d.max()), float(d.mean()))


def test_roi_align_views_agree_with_the_loaders_in_statistics(photos):
    for d in _device_and_loader_views(photos, seeds=range(100, 100 + len(photos)), method="roi_align"):
        assert d.mean() <= 4 / 255


def test_different_seeds_give_different_views(photos):
    # the check above can fail: views of other draws are far from the loader's
    seeds = [100 + i for i in range(len(photos))]
    other = [s + (1000 if i % 2 else 0) for i, s in enumerate(seeds)]
    d = _device_and_loader_views(photos, seeds, device_seeds=other)[0]
    per_sample = d.flatten(1).mean(1)
    assert (per_sample[1::2] > 5 / 255).all() and (per_sample[0::2] <= 2 / 255).all()


def test_two_samples_of_a_batch_get_their_own_draws(photos):
    img = photos[0]
    torch.manual_seed(0)  # one generator running on, as in a loader worker without per-sample seeds
    a, b = draw_image_views(AUGS, tuple(img.shape[-2:])), draw_image_views(AUGS, tuple(img.shape[-2:]))
    assert a != b
    padded, _ = pad_images([img, img])
    views = apply_views(padded, [ViewBatch.stack([a[v], b[v]]) for v in range(2)],
                        [DeviceView.from_augmentation(x) for x in AUGS])
    assert (views[0][0] - views[0][1]).abs().mean() > 0.05


def test_view_batch_collates_loader_samples():
    torch.manual_seed(3)
    params = [draw_image_views(AUGS, (300, 400))[1] for _ in range(5)]
    batch = ViewBatch.collate([p.as_tensors() for p in params])
    assert len(batch) == 5 and batch.crop.shape == (5, 4) and batch.order.dtype == torch.long
    for i, p in enumerate(params):
        assert tuple(batch.crop[i].tolist()) == p.crop and bool(batch.flip[i]) == p.flip
        assert batch.order[i].tolist() == list(p.colour.order)
        assert float(batch.blur_sigma[i]) == pytest.approx(p.colour.blur_sigma)
    with pytest.raises(ValueError, match="no samples"):
        ViewBatch.collate([])


def test_colour_draw_in_place_of_the_box_aware_colour_keeps_the_rng(photos):
    """At the point where BoxAwareViews runs a view's colour transform, ``draw_colour`` of that view's
    augmentation makes exactly its RNG calls, for every preset (so the presets can switch over)."""
    from dataclasses import replace

    from objssl.data.views import VIEW_PRESETS, BoxAwareViews

    checked = 0
    for name in VIEW_PRESETS:
        views = BoxAwareViews.from_preset(name, size=64)
        for v, spec in enumerate(views.views):
            real = views._maker._colour[v]
            aug = replace(spec.color, size=spec.hw[0])

            def checking(img, real=real, aug=aug):
                nonlocal checked
                before = torch.random.get_rng_state()
                draw_colour(aug)
                drawn = torch.random.get_rng_state()
                torch.random.set_rng_state(before)
                out = real(img)
                assert torch.equal(torch.random.get_rng_state(), drawn), (name, aug)
                checked += 1
                return out

            views._maker._colour[v] = checking
        boxes = torch.tensor([[10.0, 10.0, 200.0, 200.0], [100.0, 50.0, 400.0, 300.0], [0.0, 0.0, 300.0, 300.0],
                              [50.0, 60.0, 250.0, 280.0], [200.0, 100.0, 500.0, 330.0]])
        for seed in range(3):
            torch.manual_seed(seed)
            views(photos[3], boxes=boxes)
    assert checked >= 3 * sum(len(BoxAwareViews.from_preset(n).views) for n in VIEW_PRESETS)


def test_device_view_of_a_box_view_spec_uses_the_loaders_blur_kernel():
    from torchvision.transforms import v2

    from objssl.data.views import BoxAwareViews

    views = BoxAwareViews.from_preset("soco_star")
    for v, spec in enumerate(views.views):
        blur = [t for t in views._maker._colour[v].transforms if isinstance(t, v2.RandomApply)
                and isinstance(t.transforms[0], v2.GaussianBlur)]
        dv = DeviceView.from_view_spec(spec)
        assert dv.size == spec.hw and dv.interpolation == spec.interpolation
        assert [dv.blur_kernel] * 2 == list(blur[0].transforms[0].kernel_size), v
