"""Batched boxes and the RoI rows torchvision.ops.roi_align takes."""

import pytest
import torch
from torchvision.ops import roi_align

from objssl.ops import boxes_to_rois, rois_to_boxes


def test_boxes_to_rois_feeds_roi_align_like_per_image_crops():
    torch.manual_seed(0)
    feats = torch.randn(2, 4, 16, 16)
    boxes = torch.tensor([[[0, 0, 8, 8], [4, 4, 12, 16], [0, 0, 0, 0]],
                          [[2, 2, 6, 10], [0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.float32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    rois = boxes_to_rois(boxes, mask)
    assert rois.shape == (3, 5) and rois[:, 0].tolist() == [0, 0, 1]
    pooled = roi_align(feats, rois, output_size=2, aligned=True)
    per_image = roi_align(feats, [boxes[0][mask[0]], boxes[1][mask[1]]], output_size=2, aligned=True)
    torch.testing.assert_close(pooled, per_image)
    back, back_mask = rois_to_boxes(rois, 2, 3)
    assert torch.equal(back_mask, mask) and torch.equal(back * mask[..., None], boxes * mask[..., None])
    assert boxes_to_rois(boxes).shape == (6, 5)
    with pytest.raises(ValueError, match="more than k=1"):
        rois_to_boxes(rois, 2, 1)
    with pytest.raises(ValueError, match=r"\[B, K, 4\]"):
        boxes_to_rois(boxes[0])
