"""The view rules of each method (:data:`VIEW_PRESETS`) and the batch fields a preset provides.

A preset is the keyword arguments of :class:`objssl.data.views.BoxAwareViews` for one method (see
the package docstring and docs/methods.md for the rules and where they come from).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from objssl.data.transforms import BYOL_VIEWS
from objssl.data.views.view_spec import BoxViewSpec
from objssl.errors import ConfigError
from objssl.proposals.filters import soco_filter, univip_filter

__all__ = ["VIEW_PRESETS", "preset_kwargs", "preset_provides", "provided_fields"]

_SOCO_V1 = BoxViewSpec(224, "whole", color=BYOL_VIEWS[0], box_jitter=0.1, box_jitter_p=0.5)
_SOCO_V2 = BoxViewSpec(224, "rrc", scale=(0.5, 1.0), color=BYOL_VIEWS[1])
# box_sets stays "shared" here (the batch layout every preset user reads) and the presets keep their
# first rules; the SoCo methods ask for SoCo's "per_pair" rule, cutout and (C4) no jitter on top,
# see objssl.methods.soco
_SOCO_BOXES = dict(k=4, min_visible=0.0, min_boxes=2, max_tries=5, pad="duplicate", fallback="whole",
                   box_filter=soco_filter)
_SLOT_V1 = BoxViewSpec(224, "rrc", scale=(0.08, 1.0), color=BYOL_VIEWS[0], interpolation="bicubic",
                       carries_boxes=False)
_UNIVIP_V1 = replace(_SLOT_V1, carries_boxes=True)

VIEW_PRESETS: dict[str, dict[str, Any]] = {
    "byol": dict(views=(BoxViewSpec(224, color=BYOL_VIEWS[0], carries_boxes=False),
                        BoxViewSpec(224, color=BYOL_VIEWS[1], carries_boxes=False)), k=0),
    "soco": dict(views=(_SOCO_V1, _SOCO_V2, replace(_SOCO_V2, size=112)), **_SOCO_BOXES),
    "soco_star": dict(
        views=(_SOCO_V1, _SOCO_V2, replace(_SOCO_V2, size=192), BoxViewSpec(112, "same:1", color=BYOL_VIEWS[1])),
        **_SOCO_BOXES,
    ),
    # the soco_c4 method turns view 1's jitter off and view 2's cutout on, as the official C4 data
    "soco_c4": dict(views=(_SOCO_V1, replace(_SOCO_V2, scale=(0.6, 1.0))), **_SOCO_BOXES),
    "slotcon": dict(
        views=(_SLOT_V1, replace(_SLOT_V1, color=BYOL_VIEWS[1])),
        k=0, min_overlap_frac=0.01, max_tries=10, keep_first_crop=True,
    ),
    "univip": dict(
        views=(_UNIVIP_V1, replace(_UNIVIP_V1, color=BYOL_VIEWS[1])),
        k=4, min_visible=1.0, min_boxes=4, min_overlap_side=64, max_tries=20, pad="duplicate",
        fallback="random", fallback_min_size=64, box_filter=univip_filter,
        # instances are cut from the original image at 96 on the device; 448 keeps COCO's ~640-px
        # images within 1.5x of their resolution (see objssl.data.views.instances)
        instance_canvas=448,
    ),
}


def preset_kwargs(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s arguments; :class:`~objssl.errors.ConfigError` naming the known ones."""
    if name not in VIEW_PRESETS:
        raise ConfigError(f"no view preset {name!r}; known: {', '.join(sorted(VIEW_PRESETS))}")
    return dict(VIEW_PRESETS[name])


def provided_fields(k: int, instances: bool = False) -> frozenset[str]:
    """Batch fields of :class:`objssl.data.views.BoxAwareViews` with ``k`` boxes per image: always
    ``views`` and ``overlap`` (each pair's shared region), ``boxes`` when ``k > 0``, ``instances``
    (the canvas the boxes' instance crops are cut from) with an instance canvas."""
    return frozenset({"views", "overlap"} | ({"boxes"} if k > 0 else set()) | ({"instances"} if instances else set()))


def preset_provides(name: str) -> frozenset[str]:
    """The batch fields preset ``name`` provides (what objective terms may ask the views for)."""
    kwargs = preset_kwargs(name)
    return provided_fields(int(kwargs.get("k", 4)), instances=bool(kwargs.get("instance_canvas", 0)))
