"""Small tensor operations shared by methods (built on torchvision.ops)."""

from objssl.ops.align import align_to_overlap
from objssl.ops.rois import boxes_to_rois, rois_to_boxes

__all__ = ["align_to_overlap", "boxes_to_rois", "rois_to_boxes"]
