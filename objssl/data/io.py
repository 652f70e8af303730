"""Temporary alias of :mod:`objssl.images.decode` (moved there); removed once every import uses the new path."""

from objssl.images.decode import BadImageError, image_size, load_rgb, to_rgb

__all__ = ["BadImageError", "load_rgb", "image_size", "to_rgb"]
