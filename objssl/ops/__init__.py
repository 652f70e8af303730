"""Small tensor operations shared by methods (built on torchvision.ops)."""

from objssl.ops.align import align_to_overlap

__all__ = ["align_to_overlap"]
