"""Seeded samples of every method, made with its views' pixels in the loader and on the device
(``data.augment_on``): the boxes, masks, ids, overlaps, crops and flips are identical, the pixels agree
to the float-vs-uint8 quantisation of the colour ops, and the device batch trains the method.

Tolerances (normalised units, 1/255 of the [0, 1] range is ~0.017 after dividing by the ImageNet std):
the loader's colour ops round or truncate to 8 bits after each op, the device's stay in float, so on
the demo photos each view differs by ~0.02 on average and ≤ 0.11 at any pixel (measured), bounded
here by 0.04 and 0.2. On a CPU the device path crops with torchvision's own resize (``resize="auto"``),
so the geometry is exact and only the colour quantisation remains."""

import pytest
import torch

import objssl  # noqa: F401 - registers the built-in methods
from objssl.backbones import create_backbone
from objssl.data import demo_images
from objssl.methods import create_method
from objssl.methods.checks import tiny_kwargs
from objssl.registry import METHODS

SIZE = 64
# ORL's stage-3 sample has its own device views (tests/data/test_roi_pair_views_device.py)
NAMES = [n for n in METHODS.names() if n not in ("compose", "orl")]
CASES = [pytest.param({"name": n}, id=n) for n in NAMES]
CASES += [pytest.param({"name": "compose", "views": v, "objectives": o}, id=f"compose_{v}")
          for v, o in [("soco", [{"name": "soco_boxes"}, {"name": "slotcon_slots", "num_prototypes": 8}]),
                       ("byol", [{"name": "byol_global"}])]]


def _method(method_cfg):
    cls = METHODS.get(method_cfg["name"])
    cfg = {**tiny_kwargs(cls), **{k: v for k, v in method_cfg.items() if k != "name"}, "image_size": SIZE}
    if method_cfg["name"] == "compose":
        cfg.pop("proj_dim", None)
    torch.manual_seed(0)
    return cls, create_method(method_cfg["name"], create_backbone("test_resnet"), **cfg)


def _batch(method, cls, demo_proposals, augment_on, n=4, reduced_decode=False):
    data = {"proposals": demo_proposals if cls.needs_proposals(method.hparams) else None, "min_side": 32,
            "augment_on": augment_on, "reduced_decode": reduced_decode}
    dataset = method.build_dataset(demo_images()[:n], {"data": data})
    batch = method.collate_fn([dataset[(i, 100 + i)] for i in range(n)])
    return dataset, batch


def _assert_same_fields(loader, device):
    assert set(loader) == set(device)
    for key, value in loader.items():
        if key == "views":
            continue
        if key == "instances":
            assert torch.equal(value["boxes"], device[key]["boxes"]) and torch.equal(value["flips"], device[key]["flips"])
            diff = (value["canvas"].float() / 255 - device[key]["canvas"]).abs()
            assert diff.mean() < 0.01 and diff.max() < 0.05
        elif isinstance(value, list):
            assert all(torch.equal(a, b) for a, b in zip(value, device[key])), key
        elif isinstance(value, dict):
            assert value.keys() == device[key].keys() and all(torch.equal(value[k], device[key][k]) for k in value), key
        else:
            assert torch.equal(value, device[key]), key


@pytest.mark.parametrize("method_cfg", CASES)
def test_device_views_equal_the_loaders(method_cfg, demo_proposals, one_torch_thread):
    cls, method = _method(method_cfg)
    _, loader = _batch(method, cls, demo_proposals, "loader")
    dataset, device = _batch(method, cls, demo_proposals, "device")
    assert dataset.device_mode and "views" not in device and device["source"].dtype == torch.uint8
    # every sample has its own draw: the colour factors of one view differ across the batch
    factors = device["view_params"][1]["factors"]  # view 1 is a random crop for every method
    assert len({tuple(row.tolist()) for row in factors}) > 1
    assert len({tuple(row.tolist()) for row in device["view_params"][1]["crop"]}) == len(factors)
    made = dataset.transform.device_views(device)
    _assert_same_fields(loader, made)
    assert len(made["views"]) == len(loader["views"])
    for a, b in zip(loader["views"], made["views"]):
        assert a.shape == b.shape
        diff = (a - b).abs()
        assert diff.mean() < 0.04 and diff.max() < 0.2, (float(diff.mean()), float(diff.max()))
        if "cutout" in device:  # the cutout squares are zero on both paths
            assert torch.equal(a == 0, b == 0) or (a == 0).sum() == 0
    out = method(made)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()


@pytest.mark.parametrize("name", ["byol", "soco_star", "univip"])
def test_reduced_decode_keeps_the_boxes_and_the_views(name, demo_proposals, one_torch_thread):
    from objssl.images.decode import image_size

    # 64-px views of the 512-px demo photos: most crops allow a 2-8x smaller JPEG decode
    cls, method = _method({"name": name})
    _, loader = _batch(method, cls, demo_proposals, "loader")
    dataset, device = _batch(method, cls, demo_proposals, "device", reduced_decode=True)
    full = [image_size(p)[::-1] for p in demo_images()[:4]]
    decoded = [tuple(hw) for hw in device["source_hw"].tolist()]
    assert any(h < H for (h, _), (H, _) in zip(decoded, full))
    made = dataset.transform.device_views(device)
    if name == "univip":  # the canvas is a whole-image resize: a reduced decode changes it more
        loader, made = ({k: v for k, v in b.items() if k != "instances"} for b in (loader, made))
    _assert_same_fields(loader, made)
    for a, b in zip(loader["views"], made["views"]):
        # a reduced decode is a different (DCT-domain) downscale than torchvision's antialiased resize
        diff = (a - b).abs()
        assert diff.mean() < 0.08, float(diff.mean())
        assert torch.allclose(a.mean(dim=(2, 3)), b.mean(dim=(2, 3)), atol=0.05)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["byol", "soco_star", "univip"])
def test_cuda_makes_the_views_the_cpu_does(name, demo_proposals):
    # on CUDA the bilinear crops are one roi_align call (interpolation-level difference, see
    # docs/device_views.md); bicubic views and the colour ops are the same arithmetic
    from objssl.engine.setup import to_device

    cls, method = _method({"name": name})
    dataset, device = _batch(method, cls, demo_proposals, "device")
    cpu = dataset.transform.device_views(device)
    cuda = dataset.transform.device_views(to_device(device, torch.device("cuda"), channels_last=False))
    for a, b in zip(cpu["views"], cuda["views"]):
        assert b.is_cuda and a.shape == b.shape
        assert (a - b.cpu()).abs().mean() < 0.05
    out = method.cuda()(cuda)
    assert torch.isfinite(out["loss"])
