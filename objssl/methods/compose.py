"""``compose``: a method from config alone — a view preset and a weighted list of objective terms.

    method:
      name: compose
      views: soco              # a preset of objssl.data.views.VIEW_PRESETS
      image_size: 224
      objectives:
        - {name: soco_boxes, weight: 1.0}
        - {name: slotcon_slots, weight: 0.5, num_prototypes: 256}

:meth:`Compose.check_config` refuses, in one line and before any model is built, an unknown term (with
close matches), a bad term argument, a term whose needs the views do not provide, a term given twice, and
terms of one shared head group that disagree on the group's arguments (given once, they apply to all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from objssl.data.views import VIEW_PRESETS, BoxAwareViews, preset_provides
from objssl.errors import ConfigError
from objssl.methods.arguments import check_arguments, suggest
from objssl.methods.objective_method import ObjectiveMethod
from objssl.registry import METHODS, OBJECTIVES, PluginLoadError, UnknownNameError

__all__ = ["Compose", "views_provide", "resolve_objectives"]


def views_provide(preset: str) -> tuple[frozenset[str], int]:
    """``(batch fields, number of views)`` a view preset gives: views and overlaps always, boxes when k > 0,
    instances with an instance canvas (:func:`objssl.data.views.preset_provides`)."""
    return preset_provides(preset), len(VIEW_PRESETS[preset]["views"])


def resolve_objectives(objectives: Any, views: str) -> list[tuple[type, float, dict[str, Any]]]:
    """Validate ``method.objectives`` against the registry and the views; ``[(term class, weight, kwargs)]``
    with each shared group's arguments merged into every term of the group. ConfigError otherwise."""
    if views not in VIEW_PRESETS:
        raise ConfigError(f"method.views={views!r}: no such view preset.{suggest(str(views), sorted(VIEW_PRESETS))} "
                          f"Known: {', '.join(sorted(VIEW_PRESETS))}")
    if not isinstance(objectives, Sequence) or isinstance(objectives, str) or not objectives:
        raise ConfigError("method.objectives must be a non-empty list of {name: TERM, weight: W, ...} "
                          "(`objssl list objectives` names the terms)")
    provided, num_views = views_provide(views)
    specs: list[tuple[type, float, dict[str, Any]]] = []
    for i, entry in enumerate(objectives):
        where = f"method.objectives[{i}]"
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigError(f"{where} must be a mapping with a 'name' (got {entry!r})")
        try:
            cls = OBJECTIVES.get(entry["name"])
        except (UnknownNameError, PluginLoadError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"{where}.weight={weight!r}: must be a number >= 0")
        kwargs = {k: v for k, v in entry.items() if k not in ("name", "weight")}
        check_arguments(cls, kwargs, where, f"objective {entry['name']!r}")
        missing = sorted(set(cls.needs) - provided)
        if missing:
            raise ConfigError(f"{where}: {entry['name']} needs {', '.join(missing)}, which views={views!r} do not "
                              f"provide (it gives {', '.join(sorted(provided))})")
        if num_views < cls.min_views:
            raise ConfigError(f"{where}: {entry['name']} needs {cls.min_views} views, views={views!r} gives {num_views}")
        if any(cls.name == s[0].name for s in specs):
            raise ConfigError(f"{where}: objective {cls.name!r} is listed twice")
        specs.append((cls, float(weight), kwargs))
    return _merge_shared(specs)


def _merge_shared(specs: list[tuple[type, float, dict[str, Any]]]) -> list[tuple[type, float, dict[str, Any]]]:
    groups: dict[str, dict[str, tuple[Any, str]]] = {}
    for cls, _, kwargs in specs:
        if not cls.shared_group:
            continue
        given = groups.setdefault(cls.shared_group, {})
        for key in cls.shared_args:
            if key in kwargs:
                if key in given and given[key][0] != kwargs[key]:
                    raise ConfigError(
                        f"method.objectives: {cls.name} has {key}={kwargs[key]!r} but {given[key][1]} has "
                        f"{given[key][0]!r}; they share the {cls.shared_group!r} heads (give it once)")
                given[key] = (kwargs[key], cls.name)
    return [(cls, w, {**kwargs, **{k: v for k, (v, _) in groups.get(cls.shared_group or "", {}).items()}})
            for cls, w, kwargs in specs]


@METHODS.register("compose")
class Compose(ObjectiveMethod):
    """Any compatible terms over one backbone and one EMA target.

    Args:
        backbone: an objssl backbone.
        objectives: ``[{name: TERM, weight: W (1.0), <term arguments>}, ...]``.
        views: the view preset the batch comes from (it must provide what every term needs).
        image_size: side of the preset's 224-pixel views (the others scale with it).
        base_momentum, final_momentum: EMA schedule (0.99 → 1, cosine).
    """

    name = "compose"
    uses_data = frozenset({"proposals"})

    def __init__(self, backbone: nn.Module, *, objectives: list, views: str = "soco", image_size: int = 224,
                 base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        terms = [(cls(**kwargs), weight) for cls, weight, kwargs in resolve_objectives(objectives, views)]
        super().__init__(backbone, terms, image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self.views = views
        self._hparams = {"views": views, "image_size": image_size}

    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        super().check_config(method_cfg)
        resolve_objectives(method_cfg["objectives"], cls.config_value(method_cfg, "views"))

    @classmethod
    def needs_proposals(cls, method_cfg: Mapping[str, Any]) -> bool:
        views = cls.config_value(method_cfg, "views")
        return views in VIEW_PRESETS and VIEW_PRESETS[views].get("k", 0) > 0

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """The preset ``views`` at ``image_size``."""
        return BoxAwareViews.from_preset(cls.config_value(method_cfg, "views"), proposals=proposals,
                                         size=cls.config_value(method_cfg, "image_size"), augment_on=augment_on)
