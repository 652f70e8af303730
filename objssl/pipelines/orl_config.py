"""The ``objssl orl`` config: a section per stage.

::

    data: PATH                  # optional: the images of every stage (--data overrides it)
    stage1: {method, backbone, data, optim, train}   # an objssl training config (BYOL)
    stage2: {...}               # STAGE2_DEFAULTS below
    stage3: {method, backbone, data, optim, train}   # an objssl training config (method orl)

Overrides are ``stageN.section.key=value`` (``stage1.train.max_steps=10``, ``stage2.knn_k=5``).
The pipeline sets each stage's output folder (``OUT/stage1``, ``OUT/stage3``) and stage 3's
``data.correspondence`` / ``data.path`` itself.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from objssl.config import apply_overrides, config_from_dict, read_yaml_mapping
from objssl.errors import ConfigError

__all__ = ["STAGE2_DEFAULTS", "load_orl_config"]

#: stage 2's settings, ORL's values (``ORL:configs/selfsup/orl/coco/stage2/*``)
STAGE2_DEFAULTS: dict[str, Any] = {
    "proposals": {
        "source": "selective_search",  # ORL: OpenCV selective search, fast mode, unfiltered
        "params": {"mode": "fast"},
        "max_side": None,  # the source sees the full-resolution image, as ORL
        "workers": 1,
        "shard_size": 1000,
        "imports": [],
    },
    "box_filter": "orl",  # w, h >= 96, aspect <= 3, greedy IoU 0.5, top 100, else the first raw box
    "knn_k": 10,
    "pair_ratio": 0.1,  # top max(1, int(0.1 * B_query)) pairs per neighbour
    "feature_resize": 256,
    "feature_crop": 224,
    "crop_size": 224,  # RoI crops for the box embedding
    "feature_batch_size": 64,
    "embed_batch_size": 64,
    "pair_batch_images": 16,
    "decode_workers": 4,  # threads decoding images ahead of the RoI embedding (2c)
    "shard_size": 250,  # images per correspondence shard (the unit of resumption)
    "keep_embeddings": False,  # the RoI embeddings (~400 kB per image at R50) are removed when done
    "device": "auto",  # auto | cpu | cuda
    "precision": "auto",  # auto: bf16 autocast on a GPU, fp32 on the CPU | fp32 | bf16
}

_SECTIONS = ("data", "stage1", "stage2", "stage3")


def _merge_stage2(base: dict[str, Any], extra: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        path = f"{where}.{key}"
        if key not in out:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: {', '.join(sorted(out))}")
        if isinstance(value, dict) and isinstance(out[key], dict) and key != "params":
            out[key] = _merge_stage2(out[key], value, path)
        else:
            out[key] = value
    return out


def load_orl_config(path: str | None, overrides: list[str] = (), *, data: str | None = None) -> dict[str, Any]:
    """``{"stage1": cfg, "stage2": settings, "stage3": cfg}``; errors are one line naming the key."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml_mapping(path)
    where = path or "orl config"
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r}; an orl config has {', '.join(_SECTIONS)}")
    by_stage: dict[str, list[str]] = {"stage1": [], "stage2": [], "stage3": []}
    for item in overrides:
        stage, dot, rest = item.partition(".")
        if stage not in by_stage or not dot:
            raise ConfigError(f"override {item!r}: start it with the stage, e.g. stage1.train.max_steps=10 "
                              "or stage2.knn_k=5")
        by_stage[stage].append(rest)
    cfg: dict[str, Any] = {}
    for stage in ("stage1", "stage3"):
        section = raw.get(stage) or {}
        c = config_from_dict(section, f"{where}: {stage}")
        c = apply_overrides(c, by_stage[stage])
        if data is not None or raw.get("data") is not None:
            if data is not None or c["data"].get("path") is None:
                c["data"]["path"] = data if data is not None else raw["data"]
        cfg[stage] = c
    s2 = _merge_stage2(STAGE2_DEFAULTS, raw.get("stage2") or {}, "stage2")
    for item in by_stage["stage2"]:
        dotted, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"override 'stage2.{item}' is not of the form stage2.key=value")
        nested: Any = yaml.safe_load(value)
        for k in reversed(dotted.split(".")):
            nested = {k: nested}
        s2 = _merge_stage2(s2, nested, "stage2")
    for key in ("knn_k", "feature_resize", "feature_crop", "crop_size", "shard_size", "embed_batch_size",
                "feature_batch_size", "pair_batch_images", "decode_workers"):
        if not isinstance(s2[key], int) or isinstance(s2[key], bool) or s2[key] < 1:
            raise ConfigError(f"stage2.{key}={s2[key]!r}: must be a positive integer")
    if not (isinstance(s2["pair_ratio"], (int, float)) and 0 < s2["pair_ratio"] <= 1):
        raise ConfigError(f"stage2.pair_ratio={s2['pair_ratio']!r}: must be in (0, 1]")
    if s2["precision"] not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"stage2.precision={s2['precision']!r}: must be auto, fp32 or bf16")
    cfg["stage2"] = s2
    return cfg
