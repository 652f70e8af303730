"""A multi-object scene benchmark composed offline from RGBA cut-outs pasted onto real photos.

:func:`build_scenes` writes, for one seed, an unlabeled image folder for pretraining and the same
scenes' labels in four formats: COCO instances, a VOC multi-label root, an ImageFolder of object
crops and semantic-segmentation PNGs. One concept per module: ``catalogue`` (cut-outs by folder),
``backgrounds`` (photo crops), ``compositing`` (one scene and its visible instances), ``coco``,
``voc``, ``crops``, ``semseg`` (the writers) and ``build`` (the folder).
"""

from objssl.data.scenes.build import MANIFEST, ScenesSummary, build_scenes
from objssl.data.scenes.catalogue import (
    TUXPAINT_CATEGORIES, TUXPAINT_DIR, discover_categories, load_catalogue,
)
from objssl.data.scenes.compositing import Instance, Scene, compose_scene

__all__ = [
    "build_scenes", "ScenesSummary", "MANIFEST", "TUXPAINT_DIR", "TUXPAINT_CATEGORIES",
    "discover_categories", "load_catalogue", "Instance", "Scene", "compose_scene",
]
