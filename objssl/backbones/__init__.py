"""Backbones: any timm model, giving named multi-scale maps and a pooled vector."""

from objssl.backbones.timm import (
    BackboneOutput,
    FeatureInfo,
    SimpleFeaturePyramid,
    TimmBackbone,
    create_backbone,
)

__all__ = ["BackboneOutput", "FeatureInfo", "SimpleFeaturePyramid", "TimmBackbone", "create_backbone"]
