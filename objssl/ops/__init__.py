"""Small tensor operations shared by methods (built on torchvision.ops), and log-domain Sinkhorn."""

from objssl.ops.align import align_to_overlap
from objssl.ops.rois import boxes_to_rois, rois_to_boxes
from objssl.ops.sinkhorn import normalize_marginal, sinkhorn_log

__all__ = ["align_to_overlap", "boxes_to_rois", "rois_to_boxes", "normalize_marginal", "sinkhorn_log"]
