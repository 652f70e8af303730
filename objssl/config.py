"""Run configuration: nested dicts from YAML, defaults, and ``key=value`` overrides.

A config has five sections::

    method:   {name: byol, <keyword arguments of the method>}
    backbone: {name: resnet50, pretrained_file: null, out_indices: null, kwargs: {}}
    data:     {path: null, ...}        # null → the demo photos shipped with objssl
    optim:    {name: lars, lr: ..., ...}
    train:    {epochs: ..., batch_size: ..., out: ..., ...}

Unknown keys are errors (with the list of valid ones and a close match), so a typo never silently
falls back to a default. Method keys are checked by the method (``check_config``).
"""

from __future__ import annotations

import copy
import difflib
import os
from typing import Any

import yaml

from objssl.errors import ConfigError

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "validate_config", "config_to_yaml"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "method": {"name": "byol"},
    "backbone": {"name": "resnet50", "pretrained_file": None, "out_indices": None, "kwargs": {}},
    "data": {
        "path": None,  # folder, list file or COCO json; None → demo photos
        "image_root": None,  # where a COCO json's file_names live, if not next to it
        "num_workers": 2,
        "min_side": 32,  # images with a shorter side are skipped (counted, logged)
        "proposals": None,  # proposal cache, for object-level methods
    },
    "optim": {
        "name": "lars",  # any timm.optim name: lars, sgd, adamw, ...
        "lr": 0.2,  # base lr, scaled by global batch / 256 when lr_scaling == linear
        "lr_scaling": "linear",  # linear | none
        "weight_decay": 1.5e-6,
        "momentum": 0.9,
        "exclude_1d": True,  # no weight decay (and no LARS adaptation) for biases and norms
        "warmup_epochs": 10.0,
        "warmup_steps": None,  # overrides warmup_epochs
        "warmup_start_ratio": 0.01,  # warmup starts at lr * this
        "min_lr": 0.0,
        "clip_grad": None,
        "kwargs": {},  # extra optimizer arguments (e.g. trust_coeff for lars)
    },
    "train": {
        "epochs": 100,
        "max_steps": None,  # stop after this many optimizer steps (the schedule spans them)
        "batch_size": 256,  # global, per optimizer step
        "accum_steps": 1,
        "precision": "auto",  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
        "device": "auto",  # auto | cpu | cuda
        "seed": 0,
        "out": "runs/objssl",
        "ckpt_every": 1000,  # optimizer steps; a checkpoint is also written at the end
        "keep_last": 3,
        "log_every": 10,
        "max_nonfinite": 20,  # consecutive non-finite losses before aborting
        "sync_bn": True,  # BatchNorm → SyncBatchNorm under multi-GPU DDP
        "channels_last": False,
        "tensorboard": True,
        "progress": True,
    },
}

_FREE_SECTIONS = {"method"}  # keys checked against the method's signature instead
_FREE_KEYS = {("backbone", "kwargs"), ("optim", "kwargs")}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _merge(base: dict, extra: dict, where: str, check: bool) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        path = f"{where}.{key}" if where else key
        if check and key not in out:
            valid = sorted(out)
            raise ConfigError(
                f"unknown config key {path!r}.{_suggest(key, valid)} Valid keys here: {', '.join(valid)}"
            )
        section_is_free = path in _FREE_SECTIONS or tuple(path.split(".")) in _FREE_KEYS
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, path, check and not section_is_free)
        else:
            out[key] = value
    return out


def load_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Defaults, overlaid with a YAML file if given (unknown keys are errors)."""
    if path is None:
        return copy.deepcopy(DEFAULTS)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of sections, got {type(data).__name__}")
    try:
        return _merge(DEFAULTS, data, "", check=True)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML: ``1e-4``, ``[1, 2]``, ``null``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if len(keys) < 2:
            raise ConfigError(f"override {item!r}: name a section and a key, e.g. train.epochs=10")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        cfg = _merge(cfg, nested, "", check=True)
    return cfg


def validate_config(cfg: dict[str, Any]) -> None:
    """Check method keys (the method's ``check_config``) and a few value ranges."""
    from objssl.backbones.timm import check_backbone_name
    from objssl.registry import METHODS

    METHODS.get(cfg["method"]["name"]).check_config(cfg["method"])
    check_backbone_name(cfg["backbone"]["name"])
    t = cfg["train"]
    for key in ("batch_size", "accum_steps", "keep_last", "log_every", "ckpt_every", "max_nonfinite"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise ConfigError(f"train.{key} must be a positive integer, got {t[key]!r}")
    if t["max_steps"] is not None and (not isinstance(t["max_steps"], int) or t["max_steps"] < 1):
        raise ConfigError(f"train.max_steps must be a positive integer or null, got {t['max_steps']!r}")
    if t["precision"] not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision={t['precision']!r}: choose auto, fp32, bf16 or fp16")
    if cfg["optim"]["lr_scaling"] not in ("linear", "none"):
        raise ConfigError(f"optim.lr_scaling={cfg['optim']['lr_scaling']!r}: choose linear or none")


def config_to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
