"""Heads: small modules that map backbone/neck features to embeddings."""

from objssl.heads.grouping import SemanticGrouping
from objssl.heads.mlp import MLPHead, MLPHead2d
from objssl.heads.roi import ConvFCBoxHead, assign_fpn_levels, multilevel_roi_align

__all__ = ["MLPHead", "MLPHead2d", "SemanticGrouping", "ConvFCBoxHead", "assign_fpn_levels", "multilevel_roi_align"]
