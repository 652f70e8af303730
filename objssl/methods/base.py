"""What every method is, and everything the trainer assumes of one.

A method is an ``nn.Module`` registered in :data:`objssl.registry.METHODS` under :attr:`Method.name`.
The trainer (:class:`objssl.engine.Trainer`) relies on exactly this:

1. ``cls.check_config(method_cfg)`` (a classmethod, no model built) raises a one-line
   :class:`~objssl.errors.ConfigError` for an unknown or bad ``method.*`` key. Default: every key is a
   keyword of the constructor, with a value of its default's type, sizes positive, ``image_size >= 32``.
2. ``cls.check_data(paths, cfg)`` (no model built) checks what the method reads from the data config:
   for methods with ``"proposals"`` in :attr:`Method.uses_data`, ``data.proposals`` must be given
   (``ConfigError`` saying how to build a cache) and cover every image (``DataError`` listing the first
   missing ones and their count). The trainer warns once when ``data.proposals`` is set for a method
   that does not read it.
3. ``cls(backbone, **method_cfg_without_name)`` builds it; ``online`` (``nn.ModuleDict``) holds the trained
   parts, ``target`` their EMA copies, built eagerly here (never lazily on a first forward: lazily created
   layers miss the optimizer, DDP and checkpoints). ``online.backbone.model.<timm key>`` and
   ``target.backbone.model.<timm key>`` are the backbone weights, which is what exporters read.
4. ``method.build_dataset(paths, cfg)`` gives the dataset (default: :class:`objssl.data.dataset.ImageDataset`
   over ``method.build_transform(cfg["data"])``); ``method.collate_fn`` batches its samples (a module-level,
   picklable function: loader workers and the tests use it). With ``data.augment_on="device"`` the
   dataset's ``device_views`` (the transform's :class:`~objssl.data.device.augment.DeviceAugment`) turns
   each collated batch, on the training device, into the batch the loader path would give; the
   trainer calls it before ``method(batch)``.
5. ``method(batch)`` returns ``{"loss": scalar tensor, ...}``; every other 1-element tensor is logged.
6. ``method.update_target(step, total_steps)`` runs after every optimizer step (EMA of ``target``
   towards ``online``, cosine momentum) and returns the momentum used; ``method.momentum`` holds it.
7. ``method.state_dict()`` is the whole training state of the model (checkpoints load it strictly).

The transform a method trains with is a function of its config and the data config alone:
``cls.transform_for(method_cfg, proposals)`` (classmethod), so tools can draw it without building the
model (:func:`objssl.methods.method_transform`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from objssl.data.collate import collate_views
from objssl.errors import ConfigError
from objssl.methods.arguments import accepted_keys, check_arguments
from objssl.momentum import cosine_momentum, ema_update, make_momentum_copy

__all__ = ["Method", "PROPOSALS_HINT", "augment_on_of", "transform_of"]

log = logging.getLogger(__name__)

PROPOSALS_HINT = ("build a cache with `objssl proposals --source selective_search --data DATA --out CACHE` "
                  "and pass data.proposals=CACHE")


def augment_on_of(data_cfg: Mapping[str, Any] | None, device: Any = None) -> str:
    """``data.augment_on`` as ``"loader"`` or ``"device"``: ``"auto"`` is ``"device"`` when training on
    a CUDA ``device`` and ``"loader"`` otherwise (on a CPU the device ops cost what the loader's do, and
    they would run in the training process; tools that make views without training pass no device)."""
    value = (data_cfg or {}).get("augment_on", "loader")
    if value == "auto":
        return "device" if device is not None and torch.device(device).type == "cuda" else "loader"
    return value


def transform_of(cls: type, method_cfg: Mapping[str, Any], proposals: Any, augment_on: str) -> Any:
    """``cls.transform_for(method_cfg, proposals, augment_on=...)``; a method whose ``transform_for``
    predates ``augment_on`` (a plugin) gets its own transform, views made in the loader, and a warning
    when the device was asked for."""
    params = inspect.signature(cls.transform_for).parameters.values()
    if any(p.name == "augment_on" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return cls.transform_for(method_cfg, proposals, augment_on=augment_on)
    if augment_on == "device":
        log.warning("%s.transform_for takes no augment_on argument: its views are made in the loader",
                    cls.__name__)
    return cls.transform_for(method_cfg, proposals)


def _ema_pairs(teacher: nn.Module, student: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """Matching (teacher, student) modules; head groups (plain ModuleDicts) are walked by name."""
    if type(teacher) is nn.ModuleDict:
        return [pair for name, t in teacher.items() for pair in _ema_pairs(t, student[name])]
    return [(teacher, student)]


class Method(nn.Module):
    """Base class of the pretraining methods (see the module docstring)."""

    #: registry name, set by subclasses
    name: str = ""
    #: data-config keys the method reads (``{"proposals"}`` for the box methods)
    uses_data: frozenset[str] = frozenset()
    #: batches samples (picklable, module level)
    collate_fn = staticmethod(collate_views)

    def __init__(self, base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        super().__init__()
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum
        self.online = nn.ModuleDict()
        self.target = nn.ModuleDict()
        self.momentum = base_momentum

    # ------------------------------------------------------------------ before any model is built
    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        """One-line ConfigError for an unknown or bad ``method.*`` key (see :mod:`objssl.methods.arguments`)."""
        values = {k: v for k, v in method_cfg.items() if k != "name"}
        check_arguments(cls, values, "method", f"method {method_cfg.get('name', cls.name)!r}")

    @classmethod
    def config_value(cls, method_cfg: Mapping[str, Any], key: str) -> Any:
        """``method_cfg[key]``, else the constructor's default."""
        return method_cfg[key] if key in method_cfg else accepted_keys(cls)[0][key]

    @classmethod
    def needs_proposals(cls, method_cfg: Mapping[str, Any]) -> bool:
        return "proposals" in cls.uses_data

    @classmethod
    def check_data(cls, paths: Sequence[str], cfg: Mapping[str, Any]) -> None:
        """``data.proposals`` given, readable and covering every image, for methods that read boxes."""
        if not cls.needs_proposals(cfg["method"]):
            return
        from objssl.proposals import check_coverage

        lookup = cls.open_proposals(cfg["data"], cfg["method"].get("name", cls.name))
        check_coverage(lookup, paths, data=cfg["data"].get("path"))

    @classmethod
    def open_proposals(cls, data_cfg: Mapping[str, Any], name: str | None = None) -> Any:
        """The box lookup of ``data.proposals``; ConfigError (how to build one) when it is not set."""
        from objssl.proposals import open_proposals

        path = data_cfg.get("proposals")
        if not path:
            raise ConfigError(f"{name or cls.name} needs region proposals: {PROPOSALS_HINT}")
        return open_proposals(path)

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None,
                      augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """The per-image transform of a method with this config (``proposals``: a box lookup or None,
        when boxes are passed to each call instead; ``augment_on``: ``"loader"`` makes the views'
        pixels, ``"device"`` only draws their parameters and sends the image, for
        :attr:`device_views` to make on the training device)."""
        raise NotImplementedError(f"{cls.__name__} must define transform_for() or build_transform()")

    # ------------------------------------------------------------------ data
    def build_transform(self, data_cfg: Mapping[str, Any]) -> Callable[..., dict[str, Any]]:
        """``PIL.Image → sample dict``; proposals come from ``data_cfg["proposals"]``."""
        cfg = self.hparams
        proposals = self.open_proposals(data_cfg, self.name) if self.needs_proposals(cfg) else None
        return transform_of(type(self), cfg, proposals, augment_on_of(data_cfg))

    def build_dataset(self, paths: Sequence[str], cfg: Mapping[str, Any]) -> Any:
        from objssl.data.dataset import ImageDataset

        return ImageDataset(paths, self.build_transform(cfg["data"]), min_side=cfg["data"]["min_side"],
                            reduced_decode=cfg["data"].get("reduced_decode", True),
                            decode_on=cfg["data"].get("decode_on", "loader"))

    @property
    def hparams(self) -> dict[str, Any]:
        """The config keys the transform depends on (set by subclasses as ``self._hparams``)."""
        return dict(getattr(self, "_hparams", {}))

    # ------------------------------------------------------------------ target
    def build_target(self, parts: Sequence[str]) -> None:
        """Make the EMA target: frozen copies of the named online parts, built now."""
        for part in parts:
            self.target[part] = make_momentum_copy(self.online[part])

    def update_target(self, step: int, total_steps: int) -> float:
        """EMA update after optimizer step ``step`` (0-based); returns the momentum used."""
        self.momentum = cosine_momentum(step, total_steps, self.base_momentum, self.final_momentum)
        for teacher, student in _ema_pairs(self.target, self.online):
            ema_update(teacher, student, self.momentum)
        return self.momentum

    @property
    def backbone(self) -> nn.Module:
        return self.online["backbone"]

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")
