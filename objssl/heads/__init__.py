"""Heads: small modules that map backbone/neck features to embeddings."""

from objssl.heads.grouping import SemanticGrouping
from objssl.heads.mlp import MLPHead, MLPHead2d

__all__ = ["MLPHead", "MLPHead2d", "SemanticGrouping"]
