"""Drawing helpers: stable colours, boxes drawn where they are, views side by side."""

import numpy as np
import torch

from objssl.viz import box_colors, draw_boxes, side_by_side


def test_colours_are_distinct_and_stable():
    c5, c20 = box_colors(5), box_colors(20)
    assert c20[:5] == c5
    assert len(set(c20)) == 20


def test_boxes_are_drawn_on_their_outline():
    img = np.zeros((40, 50, 3), np.uint8)
    out = draw_boxes(img, torch.tensor([[10.0, 5.0, 30.0, 25.0]]), colors=[(255, 0, 0)], width=1)
    assert out.shape == (3, 40, 50) and out.dtype == torch.uint8
    assert out[:, 5, 20].tolist() == [255, 0, 0]  # top edge
    assert out[:, 15, 20].tolist() == [0, 0, 0]  # inside stays untouched
    assert out[:, 15, 40].tolist() == [0, 0, 0]


def test_normalised_views_are_restored():
    from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    gray = torch.full((3, 4, 4), 0.5)
    norm = (gray - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    out = draw_boxes(norm, torch.zeros(0, 4), normalized=True)
    assert (out == 128).all()


def test_side_by_side_layout():
    a = torch.full((3, 10, 6), 1, dtype=torch.uint8)
    b = torch.full((3, 5, 4), 2, dtype=torch.uint8)
    out = side_by_side([a, b], gap=3)
    assert out.shape == (3, 10, 13)
    assert (out[:, :, :6] == 1).all() and (out[:, :5, 9:] == 2).all() and (out[:, 5:, 9:] == 255).all()
