"""Image files: decoding any image Pillow reads to 8-bit RGB, and listing the images of a data source.

Images may be files or members of WebDataset tar shards (:mod:`objssl.images.tar_shards`, written by
:mod:`objssl.images.shard_writer`); :mod:`objssl.images.batch_decode` decodes batches of JPEG bytes on
a device. The bottom layer of objssl (of objssl it imports only :mod:`objssl.errors` and
:mod:`objssl.fileio`): proposals, data, viz and the commands all read images through it.
"""

from objssl.images.decode import BadImageError, image_size, load_rgb, to_rgb
from objssl.images.sources import IMAGE_EXTENSIONS, LIST_EXTENSIONS, describe_source, list_images

__all__ = [
    "BadImageError", "load_rgb", "image_size", "to_rgb",
    "IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "list_images", "describe_source",
]
