"""Level assignment, multi-level RoIAlign and the 4conv1fc box head."""

import pytest
import torch
from torchvision.ops import roi_align

from objssl.heads import ConvFCBoxHead, assign_fpn_levels, multilevel_roi_align
from objssl.heads.roi import box_head_to_detectron2


def test_levels_by_box_size_with_inclusive_thresholds():
    sizes = torch.tensor([1.0, 48.0, 48.5, 96.0, 100.0, 192.0, 200.0, 224.0, 230.0])
    boxes = torch.stack([torch.zeros(9), torch.zeros(9), sizes, sizes], dim=1)
    assert assign_fpn_levels(boxes).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1]
    wide = torch.tensor([[0.0, 0.0, 200.0, 10.0]])  # sqrt(200*10) = 44.7: level by area, not by side
    assert assign_fpn_levels(wide).tolist() == [0]


def test_multilevel_roi_align_equals_per_level_roi_align():
    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    feats = [torch.randn(2, 3, 64 // s, 64 // s) for s in strides]
    boxes = torch.tensor([[[0, 0, 10, 10], [4, 4, 60, 60], [8, 8, 40, 30]],
                          [[10, 20, 30, 40], [0, 0, 64, 64], [1, 1, 2, 2]]], dtype=torch.float32)
    levels = torch.tensor([[0, 3, 2], [1, -1, 0]])
    out = multilevel_roi_align(feats, boxes, levels, strides, output_size=5)
    assert out.shape == (6, 3, 5, 5)
    for b in range(2):
        for k in range(3):
            lvl = int(levels[b, k])
            if lvl < 0:
                assert (out[b * 3 + k] == 0).all()
                continue
            rois = torch.cat([torch.tensor([[float(b)]]), boxes[b, k][None]], dim=1)
            want = roi_align(feats[lvl], rois, 5, spatial_scale=1 / strides[lvl], sampling_ratio=0, aligned=True)[0]
            torch.testing.assert_close(out[b * 3 + k], want)


def test_box_head_shapes_and_detectron2_names():
    head = ConvFCBoxHead(16, 16, 4, 32, 7)
    assert head(torch.randn(5, 16, 7, 7)).shape == (5, 32)
    d2 = box_head_to_detectron2(head.state_dict())
    assert {"roi_heads.box_head.conv1.weight", "roi_heads.box_head.conv4.norm.running_mean",
            "roi_heads.box_head.fc1.weight", "roi_heads.box_head.fc1.bias"} <= set(d2)
    assert "roi_heads.box_head.conv1.bias" not in d2  # norm after the conv: no bias, as detectron2 builds it
    assert len(d2) == len(head.state_dict())
    with pytest.raises(KeyError):
        box_head_to_detectron2({"other.weight": torch.zeros(1)})
