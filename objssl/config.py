"""Run configuration: nested dicts from YAML, defaults, and ``key=value`` overrides.

A config has five sections, and an optional sixth::

    method:   {name: byol, <keyword arguments of the method>}
    backbone: {name: resnet50, pretrained_file: null, out_indices: null, kwargs: {}}
    data:     {path: null, ...}        # null → the demo photos shipped with objssl
    optim:    {name: lars, lr: ..., ...}
    train:    {epochs: ..., batch_size: ..., out: ..., eval_every: null, ...}
    eval:     {knn: {train: null, val: null, k: 20, ...}}   # the kNN monitor of train.eval_every

Unknown keys are errors (with the list of valid ones and a close match), so a typo never silently
falls back to a default. Method keys are checked by the method (``check_config``); every other
value's type and range by :func:`validate_config`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from typing import Any

import yaml

from objssl.errors import ConfigError

__all__ = ["DEFAULTS", "load_config", "read_yaml_mapping", "config_from_dict", "apply_overrides", "validate_config", "eval_section",
           "config_to_yaml"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "method": {"name": "byol"},
    "backbone": {"name": "resnet50", "pretrained_file": None, "out_indices": None, "kwargs": {}},
    "data": {
        "path": None,  # folder, list file or COCO json; None → demo photos
        "image_root": None,  # where a COCO json's file_names live, if not next to it
        "num_workers": 2,
        "min_side": 32,  # images with a shorter side are skipped (counted, logged)
        "proposals": None,  # proposal cache, for object-level methods
        # auto | cpu | cuda: with views made on a CUDA device (augment_on), cuda (auto: when available)
        # decodes each batch's JPEGs there (objssl.images.batch_decode); cpu, or views made in the
        # loader, decode with Pillow in the loader workers
        "decode": "auto",
        # auto | loader | device: where the views' pixels are made (docs/device_views.md); auto: on the
        # training device when it is a GPU, in the loader workers otherwise
        "augment_on": "auto",
        # views made on the device: JPEGs decoded reduced (draft mode) where every crop stays at least
        # its view's size
        "reduced_decode": True,
        "correspondence": None,  # ORL's stage-2 folder (OUT/stage2), for the orl method
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
        "eval_every": None,  # optimizer steps between kNN evals of the EMA backbone (needs eval.knn.train/val)
    },
    "eval": {
        "knn": {
            "train": None,  # ImageFolder tree of labelled train images
            "val": None,  # ImageFolder tree of validation images (same class folders)
            "k": 20,
            "temperature": 0.07,
            "image_size": 224,
            "batch_size": 64,
            "num_workers": 0,
        },
    },
}
#: sections a config may lack (configs written before they existed); validation reads their defaults
_OPTIONAL_SECTIONS = ("eval",)

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
    data = read_yaml_mapping(path)
    try:
        return _merge(DEFAULTS, data, "", check=True)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_yaml_mapping(path: str) -> dict[str, Any]:
    """The mapping a YAML config file holds (empty file: ``{}``); a missing file, bad YAML or a
    non-mapping is a one-line :class:`ConfigError` naming the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def config_from_dict(data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Defaults overlaid with ``data`` (sections as nested dicts, e.g. one stage of a pipeline
    config); unknown keys are errors starting with ``where``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of sections, got {type(data).__name__}")
    try:
        return _merge(DEFAULTS, data, "", check=True)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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


def _check_method_keys(method_cfg: dict[str, Any]) -> None:
    """The method checks its own keys and values (the method contract's ``check_config``)."""
    from objssl.registry import METHODS

    METHODS.get(method_cfg["name"]).check_config(method_cfg)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _check(cond: bool, key: str, value: Any, what: str) -> None:
    if not cond:
        raise ConfigError(f"{key} must be {what}, got {value!r}")


def _check_values(cfg: dict[str, Any]) -> None:
    """Types and ranges of every data/optim/train/backbone value (method values: the method checks them)."""
    t, o, d, b = cfg["train"], cfg["optim"], cfg["data"], cfg["backbone"]
    for key in ("batch_size", "accum_steps", "keep_last", "log_every", "ckpt_every", "max_nonfinite", "epochs"):
        _check(_is_int(t[key]) and t[key] >= 1, f"train.{key}", t[key], "a positive integer")
    _check(t["max_steps"] is None or (_is_int(t["max_steps"]) and t["max_steps"] >= 1),
           "train.max_steps", t["max_steps"], "a positive integer or null")
    _check(_is_int(t["seed"]) and t["seed"] >= 0, "train.seed", t["seed"], "a non-negative integer")
    if t["precision"] not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision={t['precision']!r}: choose auto, fp32, bf16 or fp16")
    device = t["device"]
    _check(isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", device) is not None,
           "train.device", device, "auto, cpu, cuda or cuda:N")
    _check(isinstance(t["out"], str) and t["out"].strip() != "", "train.out", t["out"], "a folder path")
    for key in ("sync_bn", "channels_last", "tensorboard", "progress"):
        _check(isinstance(t[key], bool), f"train.{key}", t[key], "true or false")

    _check(isinstance(o["name"], str) and o["name"] != "", "optim.name", o["name"], "an optimizer name")
    if o["lr_scaling"] not in ("linear", "none"):
        raise ConfigError(f"optim.lr_scaling={o['lr_scaling']!r}: choose linear or none")
    _check(_is_number(o["lr"]) and o["lr"] > 0, "optim.lr", o["lr"], "a positive number")
    for key in ("weight_decay", "momentum", "warmup_epochs", "min_lr"):
        _check(_is_number(o[key]) and o[key] >= 0, f"optim.{key}", o[key], "a non-negative number")
    _check(_is_number(o["warmup_start_ratio"]) and 0 <= o["warmup_start_ratio"] <= 1,
           "optim.warmup_start_ratio", o["warmup_start_ratio"], "a number in [0, 1]")
    _check(o["warmup_steps"] is None or (_is_int(o["warmup_steps"]) and o["warmup_steps"] >= 0),
           "optim.warmup_steps", o["warmup_steps"], "a non-negative integer or null")
    _check(o["clip_grad"] is None or (_is_number(o["clip_grad"]) and o["clip_grad"] > 0),
           "optim.clip_grad", o["clip_grad"], "a positive number or null")
    _check(isinstance(o["exclude_1d"], bool), "optim.exclude_1d", o["exclude_1d"], "true or false")
    _check(isinstance(o["kwargs"], dict), "optim.kwargs", o["kwargs"], "a mapping")

    for key in ("path", "image_root", "proposals", "correspondence"):
        _check(d[key] is None or isinstance(d[key], str), f"data.{key}", d[key], "a path or null")
    _check(_is_int(d["num_workers"]) and d["num_workers"] >= 0, "data.num_workers", d["num_workers"],
           "a non-negative integer")
    _check(_is_int(d["min_side"]) and d["min_side"] >= 1, "data.min_side", d["min_side"], "a positive integer")
    _check(d["decode"] in ("auto", "cpu", "cuda"), "data.decode", d["decode"], "auto, cpu or cuda")
    _check(d["augment_on"] in ("auto", "loader", "device"), "data.augment_on", d["augment_on"],
           "auto, loader or device")
    _check(isinstance(d["reduced_decode"], bool), "data.reduced_decode", d["reduced_decode"], "true or false")

    _check(isinstance(b["name"], str), "backbone.name", b["name"], "a timm model name")
    _check(b["pretrained_file"] is None or isinstance(b["pretrained_file"], str),
           "backbone.pretrained_file", b["pretrained_file"], "a file path or null")
    oi = b["out_indices"]
    _check(oi is None or (isinstance(oi, (list, tuple)) and all(_is_int(i) for i in oi)),
           "backbone.out_indices", oi, "a list of integers or null")
    _check(isinstance(b["kwargs"], dict), "backbone.kwargs", b["kwargs"], "a mapping")


def validate_config(cfg: dict[str, Any]) -> None:
    """Check the method's keys (through the method) and the type and range of every other value.

    Errors are one-line :class:`~objssl.errors.ConfigError` s naming the key; ``cfg`` is not changed.
    """
    from objssl.backbones.timm import check_backbone_name

    for section in DEFAULTS:
        if section in _OPTIONAL_SECTIONS and section not in cfg:
            continue
        _check(isinstance(cfg.get(section), dict), section, cfg.get(section), "a mapping")
    _check(isinstance(cfg["method"].get("name"), str), "method.name", cfg["method"].get("name"), "a method name")
    _check_method_keys(cfg["method"])
    check_backbone_name(cfg["backbone"]["name"])
    _check_values(cfg)
    _check_eval(cfg)


def eval_section(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg["eval"]`` over its defaults (a config written before the section existed has none)."""
    return _merge(DEFAULTS["eval"], cfg.get("eval") or {}, "eval", check=False)


def _check_eval(cfg: dict[str, Any]) -> None:
    """``train.eval_every`` and, when it is set, ``eval.knn.*``: the two image folders are read now,
    so that a bad path fails before training, not at the first eval."""
    every = cfg["train"].get("eval_every")
    _check(every is None or (_is_int(every) and every >= 1), "train.eval_every", every, "a positive integer or null")
    knn = eval_section(cfg)["knn"]
    _check(_is_int(knn["k"]) and knn["k"] >= 1, "eval.knn.k", knn["k"], "a positive integer")
    _check(_is_number(knn["temperature"]) and knn["temperature"] > 0, "eval.knn.temperature", knn["temperature"],
           "a positive number")
    _check(_is_int(knn["image_size"]) and knn["image_size"] >= 8, "eval.knn.image_size", knn["image_size"],
           "an integer >= 8")
    _check(_is_int(knn["batch_size"]) and knn["batch_size"] >= 1, "eval.knn.batch_size", knn["batch_size"],
           "a positive integer")
    _check(_is_int(knn["num_workers"]) and knn["num_workers"] >= 0, "eval.knn.num_workers", knn["num_workers"],
           "a non-negative integer")
    if every is None:
        return
    from objssl.errors import DataError
    from objssl.evaluation.datasets import read_image_folder

    sets = {}
    for key in ("train", "val"):
        path = knn[key]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"train.eval_every={every} needs eval.knn.{key}: an ImageFolder tree of labelled images")
        try:
            sets[key] = read_image_folder(path)
        except DataError as exc:
            raise ConfigError(f"eval.knn.{key}: {exc}") from None
    if sets["train"].classes != sets["val"].classes:
        raise ConfigError(f"eval.knn.val: its class folders differ from eval.knn.train's ({knn['val']})")
    if len(sets["train"]) < knn["k"]:
        raise ConfigError(f"eval.knn.train: {knn['train']} has {len(sets['train'])} images, fewer than "
                          f"eval.knn.k={knn['k']}")


def config_to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
