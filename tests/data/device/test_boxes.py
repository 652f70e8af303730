"""Boxes and overlaps computed from a view's parameters equal the loader path's for the same crop and flip."""

import torch

from objssl.data.device.boxes import boxes_in_view, overlaps_in_views
from objssl.data.device.params import ViewParams
from objssl.data.views import BoxAwareViews, BoxViewSpec
from objssl.data.views.box_geometry import overlap_in_view

H, W = 342, 512
BOXES = torch.tensor([[10.0, 20.0, 200.0, 150.0], [300.0, 100.0, 500.0, 330.0], [0.0, 0.0, 512.0, 342.0],
                      [450.0, 300.0, 510.0, 340.0], [5.0, 5.0, 6.0, 6.0]])
PARAMS = [ViewParams((30.0, 10.0, 400.0, 300.0), True), ViewParams((100.0, 50.0, 512.0, 342.0), False),
          ViewParams((0.0, 0.0, 512.0, 342.0), True)]
SIZES = [(224, 224), (96, 128), (112, 112)]


def test_boxes_equal_the_loader_geometry(photos):
    img = photos[3]
    assert tuple(img.shape[-2:]) == (H, W)
    for p, size in zip(PARAMS, SIZES):
        spec = BoxViewSpec(size)
        _, loader = BoxAwareViews._geometry(img, BOXES, torch.tensor(p.crop), p.flip, spec, (H, W))
        assert torch.equal(boxes_in_view(BOXES, p, size, (H, W)), loader)
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
