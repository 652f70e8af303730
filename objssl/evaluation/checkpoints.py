"""What ``CKPT`` of ``objssl eval`` names, as a backbone to extract features with.

* an **objssl checkpoint** (``OUT/checkpoints/step_*.pth``): verified and upgraded by
  :func:`objssl.checkpoint.load_checkpoint`; the backbone name comes from the file, and the
  ``online`` backbone is evaluated unless ``branch="target"`` (the EMA teacher);
* a **timm export** (``objssl export --to timm``: a plain timm state dict, ``.pth`` or
  ``.safetensors``): it carries no name, so ``backbone`` must be given; it must load strictly;
* ``random`` or ``timm:NAME``: the backbone with timm's random init, drawn from its own seeded
  generator (the same weights every run, and the caller's RNG state untouched).

A checkpoint for another backbone than ``backbone`` is a one-line :class:`~objssl.errors.UserError`
naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from objssl.backbones import create_backbone
from objssl.checkpoint import NotAnObjsslCheckpointError, load_checkpoint, safe_torch_load
from objssl.errors import UserError
from objssl.fileio import sha256_file

__all__ = ["EvalBackbone", "load_eval_backbone", "file_fingerprint"]

RANDOM_INIT_SEED = 0


@dataclass
class EvalBackbone:
    """A backbone ready for feature extraction, and what it was made from."""

    module: nn.Module  # an objssl backbone (TimmBackbone)
    name: str  # timm model name
    source: str  # objssl | timm | random
    checkpoint: str  # CKPT as given
    fingerprint: str  # identifies the weights, for the feature cache


def file_fingerprint(path: str) -> str:
    """sha256 of the file's bytes (a copied or renamed file keeps its cached features)."""
    return sha256_file(path)


def _random_backbone(name: str) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return create_backbone(name)


def _load_strict(module: nn.Module, state: dict, path: str, name: str) -> None:
    target = module.model if hasattr(module, "model") else module
    result = target.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} of its weights missing (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unknown weights (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise UserError(f"{path}: not weights of backbone {name!r}: {'; '.join(problems)}")


def _read_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any damage is one line naming the file
            raise UserError(f"{path}: cannot read safetensors file: {exc}") from None
    return safe_torch_load(path)


def load_eval_backbone(spec: str, backbone: str | None = None, *, branch: str = "online") -> EvalBackbone:
    """Build the backbone ``spec`` names (see the module docstring), in eval mode, on the CPU."""
    if branch not in ("online", "target"):
        raise UserError(f"branch={branch!r}: choose online or target")
    if spec == "random" or spec.startswith("timm:"):
        name = spec[len("timm:"):] if spec.startswith("timm:") else backbone
        if not name:
            raise UserError("CKPT 'random' needs --backbone NAME (the timm model to initialise at random)")
        if backbone and backbone != name:
            raise UserError(f"CKPT {spec!r} names backbone {name!r} but --backbone is {backbone!r}")
        module = _random_backbone(name)
        return EvalBackbone(module.eval(), name, "random", spec, f"random:{name}:seed{RANDOM_INIT_SEED}")
    path = os.fspath(spec)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path!r} does not exist (give an objssl checkpoint, a timm export, "
                        "'random' or 'timm:NAME')")
    try:
        ckpt = None if path.endswith(".safetensors") else load_checkpoint(path)
    except NotAnObjsslCheckpointError:
        ckpt = None
    if ckpt is not None:
        info = ckpt.get("backbone") or {}
        name = info.get("name")
        if backbone and backbone != name:
            raise UserError(f"{path}: a checkpoint of backbone {name!r}, not of --backbone {backbone!r}")
        prefix = f"{branch}.backbone.model."
        state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
        if not state:
            raise UserError(f"{path}: the checkpoint holds no {branch} backbone weights ({prefix}*)")
        module = create_backbone(name, **dict(info.get("kwargs") or {}))
        _load_strict(module, state, path, name)
        return EvalBackbone(module.eval(), name, "objssl", path, f"{file_fingerprint(path)}:{branch}")
    state = _read_state_dict(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: neither an objssl checkpoint nor a timm state dict of tensors")
    if not backbone:
        raise UserError(f"{path}: a timm export carries no model name: give --backbone NAME")
    module = create_backbone(backbone)
    _load_strict(module, state, path, backbone)
    return EvalBackbone(module.eval(), backbone, "timm", path, file_fingerprint(path))
