"""Temporary alias of :mod:`objssl.images.sources` (moved there); removed once every import uses the new path."""

from objssl.images.sources import IMAGE_EXTENSIONS, LIST_EXTENSIONS, describe_source, list_images

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "list_images", "describe_source"]
