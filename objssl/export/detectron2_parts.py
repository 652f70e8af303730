"""Detector parts a method pretrains, as detectron2 Mask R-CNN FPN keys (SoCo's FPN and box head).

:data:`D2_PART_MAPPERS` maps a method name to ``fn(ckpt, which) -> {detectron2 key: tensor}``; the
detectron2 exporter adds those keys for ``layout="fpn"``, and
:func:`objssl.integrations.detectron2.load_objssl_parts` loads them into a built detector.

The mappers read the version-2 state-dict layout (``<branch>.neck.*``,
``<branch>.soco_boxes.box_head.*``); a version-1 checkpoint is seen through
:func:`objssl.checkpoint.upgrade_checkpoint`, so both layouts export alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from objssl.checkpoint import upgrade_checkpoint
from objssl.export.common import branch_prefix
from objssl.heads.roi import box_head_to_detectron2
from objssl.necks.fpn import fpn_to_detectron2

__all__ = ["D2_PART_MAPPERS", "register_d2_part_mapper", "soco_parts_to_detectron2", "objective_names"]

#: method name → ``fn(ckpt, which) -> {detectron2 key: tensor}`` for the non-backbone parts a
#: method pretrains (FPN laterals/outputs, box-head convs/fc), with full-model FPN-layout keys
#: (``backbone.fpn_lateral2.weight``, ``roi_heads.box_head.conv1.weight``, ...). A mapper may
#: return ``{}`` when the checkpoint has no such parts.
D2_PART_MAPPERS: dict[str, Callable[[dict[str, Any], str], dict[str, Tensor]]] = {}


def register_d2_part_mapper(method: str) -> Callable:
    """Decorator: ``@register_d2_part_mapper("soco")`` on ``fn(ckpt, which) -> {d2 key: tensor}``."""

    def deco(fn: Callable[[dict[str, Any], str], dict[str, Tensor]]) -> Callable:
        D2_PART_MAPPERS[method] = fn
        return fn

    return deco


def _part(model: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}


@register_d2_part_mapper("soco")
@register_d2_part_mapper("soco_star")
def soco_parts_to_detectron2(ckpt: dict[str, Any], which: str) -> dict[str, Tensor]:
    """SoCo's FPN and box head → detectron2 Mask R-CNN FPN keys (the official ``Head`` converter's parts)."""
    model = upgrade_checkpoint(ckpt, to_version=2)["model"]
    branch = branch_prefix(which)
    # SoCo's FPN always runs on c2..c5, so its outputs are p2..p5 in that order
    return {**fpn_to_detectron2(_part(model, f"{branch}.neck."), ["p2", "p3", "p4", "p5"]),
            **box_head_to_detectron2(_part(model, f"{branch}.soco_boxes.box_head."))}


def objective_names(ckpt: dict[str, Any]) -> set[str]:
    """Term names of a ``compose`` checkpoint's ``config.method.objectives`` (names, dicts with a
    ``name``, or a mapping keyed by term name)."""
    objectives = ((ckpt.get("config") or {}).get("method") or {}).get("objectives") or []
    if isinstance(objectives, dict):
        items: list[Any] = [*objectives.keys(), *objectives.values()]
    else:
        items = list(objectives) if isinstance(objectives, (list, tuple)) else [objectives]
    names = set()
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            names.add(item["name"])
    return names


@register_d2_part_mapper("compose")
def compose_parts_to_detectron2(ckpt: dict[str, Any], which: str) -> dict[str, Tensor]:
    """A composed method's FPN and box head when it trains the ``soco_boxes`` term, else nothing."""
    if "soco_boxes" not in objective_names(ckpt):
        return {}
    return soco_parts_to_detectron2(ckpt, which)
