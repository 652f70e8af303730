"""align_to_overlap: both views' maps, once aligned, look at the same image points."""

import pytest
import torch

from objssl.ops import align_to_overlap

VIEW = 16  # view side in pixels
CELLS = 8  # map side in cells (2 pixels per cell)


def image_field(x, y):
    """Two channels that are linear in the image point, so bilinear sampling reproduces them exactly."""
    return torch.stack([x + 10 * y, 3 * y - x])


def view_map(crop, flip):
    """The map a network would see: each cell holds the field at the image point under its centre."""
    x1, y1, x2, y2 = crop
    centres = (torch.arange(CELLS, dtype=torch.float64) + 0.5) * (VIEW / CELLS) / VIEW  # fractions of the view
    y, x = torch.meshgrid(y1 + centres * (y2 - y1), x1 + centres * (x2 - x1), indexing="ij")
    m = image_field(x, y)
    return m.flip(-1) if flip else m


def test_aligned_maps_agree_on_the_overlap_and_match_the_image():
    crop_a, crop_b = (0.0, 0.0, 80.0, 80.0), (20.0, 10.0, 100.0, 90.0)
    shared = (20.0, 10.0, 80.0, 80.0)  # crop_a ∩ crop_b in image pixels
    # the shared region in each view's pixels: scale by VIEW / crop side; view b is mirrored
    box_a = torch.tensor([[4.0, 2.0, 16.0, 16.0]], dtype=torch.float64)
    box_b = torch.tensor([[VIEW - 12.0, 0.0, VIEW - 0.0, 14.0]], dtype=torch.float64)
    maps = torch.stack([view_map(crop_a, False), view_map(crop_b, True)])  # [2, 2, 8, 8]
    aligned_a = align_to_overlap(maps[:1], box_a, torch.tensor([False]), (VIEW, VIEW))
    aligned_b = align_to_overlap(maps[1:], box_b, torch.tensor([True]), (VIEW, VIEW))
    want = view_map(shared, False)[None]
    inner = (..., slice(1, -1), slice(1, -1))  # edge cells sample within half a cell of a view border (clamped)
    torch.testing.assert_close(aligned_a[inner], want[inner], atol=1e-6, rtol=0)
    torch.testing.assert_close(aligned_b[inner], want[inner], atol=1e-6, rtol=0)
    # batched: one call for both views gives the same as one call each
    both = align_to_overlap(maps, torch.cat([box_a, box_b]), torch.tensor([False, True]), (VIEW, VIEW))
    torch.testing.assert_close(both, torch.cat([aligned_a, aligned_b]), atol=0, rtol=0)
    assert aligned_a.shape == maps[:1].shape and aligned_a.dtype == torch.float64


def test_non_square_views_scale_x_and_y_separately():
    maps = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    # the whole view as the box: aligning is the identity, whatever the view's pixel size
    boxes = torch.tensor([[0.0, 0.0, 30.0, 12.0]] * 2)
    out = align_to_overlap(maps, boxes, torch.tensor([False, True]), (12, 30))
    torch.testing.assert_close(out[0], maps[0])
    torch.testing.assert_close(out[1], maps[1].flip(-1))


def test_boxes_must_be_one_per_map():
    with pytest.raises(ValueError, match=r"boxes must be \[2, 4\]"):
        align_to_overlap(torch.zeros(2, 1, 4, 4), torch.zeros(3, 4), torch.zeros(2, dtype=torch.bool), (8, 8))
