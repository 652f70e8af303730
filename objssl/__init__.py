"""objssl: object-level self-supervised pretraining over any timm backbone."""

__version__ = "0.1.0"
