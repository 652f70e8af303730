"""ORL's intra-RoI jitter obeys its rules on many seeds; the original box comes back when no try fits."""

import math

import pytest
import torch
from torchvision.ops import box_iou

from objssl.data.roi_jitter import jitter_box

CASES = [  # (box xyxy, image width, height)
    ([10, 20, 110, 220], 300, 300),
    ([0, 0, 640, 480], 640, 480),  # the whole image: only smaller boxes fit
    ([500, 5, 620, 60], 640, 480),  # at a corner, wide
    ([3, 3, 13, 40], 50, 50),  # small and tall: rounding matters
]


@pytest.mark.parametrize("box, width, height", CASES)
def test_jittered_boxes_keep_orls_constraints(box, width, height):
    b = torch.tensor(box)
    w, h = box[2] - box[0], box[3] - box[1]
    found_any = 0
    for seed in range(200):
        torch.manual_seed(seed)
        j, found = jitter_box(b, width, height)
        assert j.dtype == torch.int64 and j.shape == (4,)
        if not found:
            assert torch.equal(j, b)
            continue
        found_any += 1
        x1, y1, x2, y2 = j.tolist()
        jw, jh = x2 - x1, y2 - y1
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height  # inside the image
        assert float(box_iou(j[None].double(), b[None].double())) > 0.5
        # some real-valued side lengths within half a pixel of the rounded ones have area scale in [0.5, 2]
        # and aspect in [0.5, 2]
        assert (jw - 0.5) * (jh - 0.5) <= 2 * w * h and (jw + 0.5) * (jh + 0.5) >= 0.5 * w * h
        assert (jw - 0.5) / (jh + 0.5) <= 2 and (jw + 0.5) / (jh - 0.5) >= 0.5
        # centre moved by at most half the original box's side (plus rounding)
        assert abs((x1 + x2) / 2 - (box[0] + box[2]) / 2) <= 0.5 * w + 1
        assert abs((y1 + y2) / 2 - (box[1] + box[3]) / 2) <= 0.5 * h + 1
    assert found_any >= 80  # the constraints were checked on many accepted jitters (a whole-image box: ~half)


def test_the_draws_cover_orls_ranges():
    b = torch.tensor([100, 100, 200, 200])
    scales, ratios, shifts = [], [], []
    for seed in range(400):
        torch.manual_seed(seed)
        j, found = jitter_box(b, 1000, 1000)
        assert found
        x1, y1, x2, y2 = j.tolist()
        scales.append((x2 - x1) * (y2 - y1) / 100**2)
        ratios.append(math.log((x2 - x1) / (y2 - y1)))
        shifts.append(((x1 + x2) / 2 - 150) / 100)
    # accepted jitters lean towards the original box (IoU > 0.5), but reach well into each range
    assert 0.5 <= min(scales) < 0.65 and 1.5 < max(scales) <= 2.05
    assert min(ratios) < math.log(0.6) and max(ratios) > math.log(1 / 0.6)
    assert max(abs(s) for s in shifts) > 0.2 and max(abs(s) for s in shifts) <= 0.5 + 0.01


def test_the_box_itself_when_no_try_fits():
    # a 1-pixel-wide image: every jitter of its full-height box is at least 5 px wide
    torch.manual_seed(0)
    box = torch.tensor([0, 0, 1, 100])
    j, found = jitter_box(box, 1, 100)
    assert not found and torch.equal(j, box)


def _one_try_at_a_time(box, width, height, u):
    """ORL's loop, try after try, on the same uniform draws ``u [tries, 4]``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    for a, r, sx, sy in u.tolist():
        area = (0.5 + 1.5 * a) * w * h
        ratio = math.exp(math.log(0.5) + (math.log(2) - math.log(0.5)) * r)
        nw, nh = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        nx, ny = round(x1 + w / 2 + (sx - 0.5) * w - nw / 2), round(y1 + h / 2 + (sy - 0.5) * h - nh / 2)
        if nx >= 0 and ny >= 0 and nx + nw <= width and ny + nh <= height:
            iw = max(0, min(nx + nw, x2) - max(nx, x1))
            ih = max(0, min(ny + nh, y2) - max(ny, y1))
            inter = iw * ih
            if inter / (nw * nh + w * h - inter) > 0.5:
                return [nx, ny, nx + nw, ny + nh]
    return list(box)


@pytest.mark.parametrize("box, width, height", CASES)
def test_the_first_accepted_try_is_taken(box, width, height):
    for seed in range(20):
        torch.manual_seed(seed)
        got, _ = jitter_box(torch.tensor(box), width, height)
        torch.manual_seed(seed)
        u = torch.rand(200, 4, dtype=torch.float64)
        assert got.tolist() == _one_try_at_a_time(box, width, height, u)
