"""Data: image decoding, data sources, shipped demo photos (datasets, views and samplers follow)."""

from objssl.data.demo import demo_image_dir, demo_images
from objssl.images.decode import BadImageError, image_size, load_rgb
from objssl.images.sources import describe_source, list_images

__all__ = [
    "BadImageError",
    "load_rgb",
    "image_size",
    "list_images",
    "describe_source",
    "demo_image_dir",
    "demo_images",
]
