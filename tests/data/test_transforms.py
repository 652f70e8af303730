"""BYOL's view augmentation has the exact parameters of BYOL (docs/methods.md)."""

import torch
from torchvision.transforms import InterpolationMode, v2

from objssl.data.transforms import BYOL_VIEWS, IMAGENET_MEAN, IMAGENET_STD, image_view_transform


def _ops(t):
    out = []
    for op in t.transforms:
        if isinstance(op, v2.Compose):
            out += _ops(op)
        elif isinstance(op, v2.RandomApply):
            out += [(op.p, inner) for inner in op.transforms]
        else:
            out.append(op)
    return out


def test_byol_view_parameters():
    v1, v2_ = (image_view_transform(a) for a in BYOL_VIEWS)
    ops1, ops2 = _ops(v1), _ops(v2_)
    rrc = next(o for o in ops1 if isinstance(o, v2.RandomResizedCrop))
    assert tuple(rrc.size) == (224, 224) and rrc.scale == (0.08, 1.0) and rrc.interpolation == InterpolationMode.BILINEAR
    assert next(o for o in ops1 if isinstance(o, v2.RandomHorizontalFlip)).p == 0.5
    p, jitter = next(o for o in ops1 if isinstance(o, tuple) and isinstance(o[1], v2.ColorJitter))
    assert p == 0.8
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1))
    assert next(o for o in ops1 if isinstance(o, v2.RandomGrayscale)).p == 0.2
    blur_p = {i: next(o for o in ops if isinstance(o, tuple) and isinstance(o[1], v2.GaussianBlur)) for i, ops in ((1, ops1), (2, ops2))}
    assert blur_p[1][0] == 1.0 and blur_p[2][0] == 0.1
    assert blur_p[1][1].sigma == [0.1, 2.0] and blur_p[1][1].kernel_size == (23, 23)
    assert not any(isinstance(o, v2.RandomSolarize) for o in ops1)
    sol = next(o for o in ops2 if isinstance(o, v2.RandomSolarize))
    assert sol.p == 0.2 and sol.threshold == 128
    norm = next(o for o in ops1 if isinstance(o, v2.Normalize))
    assert tuple(norm.mean) == IMAGENET_MEAN and tuple(norm.std) == IMAGENET_STD


def test_solarize_acts_on_uint8_scale():
    # the solarize threshold is applied before conversion to float: 200 → 55, 100 stays
    img = torch.tensor([[[200, 100]]], dtype=torch.uint8).expand(3, 1, 2).contiguous()
    out = v2.RandomSolarize(threshold=128, p=1.0)(img)
    assert out[0, 0].tolist() == [55, 100]
