"""objssl: object-level self-supervised pretraining over any timm backbone.

    import objssl
    backbone = objssl.create_backbone("resnet50")
    method = objssl.create_method("byol", backbone)

Importing objssl registers the built-in parts; it never imports detectron2 or mmsegmentation.
"""

__version__ = "0.1.0"

from objssl import export, heads, losses, methods, necks, objectives, proposals  # noqa: E402,F401 - register built-ins
from objssl.backbones import create_backbone  # noqa: E402
from objssl.methods import create_method  # noqa: E402
from objssl.registry import (  # noqa: E402
    BACKBONES,
    EXPORTERS,
    HEADS,
    LOSSES,
    METHODS,
    NECKS,
    OBJECTIVES,
    PROPOSALS,
    Registry,
)

__all__ = [
    "__version__", "create_backbone", "create_method", "Registry",
    "BACKBONES", "NECKS", "HEADS", "LOSSES", "OBJECTIVES", "METHODS", "PROPOSALS", "EXPORTERS",
]
