"""Boxes and overlaps computed from a view's parameters equal the loader path's for the same crop and flip."""

import torch

from objssl.data.device.boxes import boxes_in_view, overlaps_in_views
from objssl.data.device.params import ViewParams
from objssl.data.views.box_geometry import overlap_in_view

H, W = 342, 512
BOXES = torch.tensor([[10.0, 20.0, 200.0, 150.0], [300.0, 100.0, 500.0, 330.0], [0.0, 0.0, 512.0, 342.0],
                      [450.0, 300.0, 510.0, 340.0], [5.0, 5.0, 6.0, 6.0]])
PARAMS = [ViewParams((30.0, 10.0, 400.0, 300.0), True), ViewParams((100.0, 50.0, 512.0, 342.0), False),
          ViewParams((0.0, 0.0, 512.0, 342.0), True)]
SIZES = [(224, 224), (96, 128), (112, 112)]


def test_boxes_cover_what_the_pixels_show():
    # each box painted white on black goes through the pixels' own crop + resize + flip (nearest, so
    # no blur); the box mapped from the parameters bounds the white region to within a view pixel
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    for p, size in zip(PARAMS, SIZES):
        x1, y1, x2, y2 = (int(c) for c in p.crop)
        mapped = boxes_in_view(BOXES[:4], p, size, (H, W))
        for box, got in zip(BOXES[:4], mapped):
            img = torch.zeros(1, H, W)
            bx1, by1, bx2, by2 = (int(c) for c in box)
            img[:, by1:by2, bx1:bx2] = 1.0
            view = TF.resized_crop(img, y1, x1, y2 - y1, x2 - x1, list(size), interpolation=InterpolationMode.NEAREST)
            view = TF.horizontal_flip(view) if p.flip else view
            ys, xs = torch.nonzero(view[0] > 0.5, as_tuple=True)
            if not len(xs):  # the box is outside the crop: its mapped box is empty
                assert got[2] <= got[0] + 1 or got[3] <= got[1] + 1
                continue
            seen = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.allclose(seen, got, atol=1.01), (p, box, seen, got)
    flipped = boxes_in_view(BOXES[:1], PARAMS[0], SIZES[0], (H, W))
    unflipped = boxes_in_view(BOXES[:1], ViewParams(PARAMS[0].crop, False), SIZES[0], (H, W))
    assert torch.allclose(flipped[0, [2, 0]], 224 - unflipped[0, [0, 2]])


def test_overlaps_equal_overlap_in_view():
    overlap, valid = overlaps_in_views(PARAMS, SIZES)
    crops = torch.tensor([p.crop for p in PARAMS])
    for i, (p, size) in enumerate(zip(PARAMS, SIZES)):
        assert torch.equal(overlap[i], overlap_in_view(crops[i], crops, p.flip, size))
    assert valid.all()
    apart = [ViewParams((0.0, 0.0, 100.0, 100.0)), ViewParams((200.0, 200.0, 300.0, 300.0))]
    _, valid = overlaps_in_views(apart, [(64, 64), (64, 64)])
    assert valid.tolist() == [[True, False], [False, True]]
