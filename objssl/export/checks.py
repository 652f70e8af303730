"""The exporter contract, as a check plugin authors (and objssl's own tests) run on a real checkpoint.

:func:`check_exporter` exports a checkpoint's teacher and student with a registered exporter, reads
the file back and asserts the round trip: the file holds exactly the keys the report says were
written; every tensor in it is, bit for bit, a tensor of that branch of the checkpoint; and every
backbone tensor the report does not list as skipped arrives.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import Tensor

from objssl.checkpoint import load_checkpoint, safe_torch_load
from objssl.export.common import ExportReport, backbone_state_dict, branch_prefix, checkpoint_model

__all__ = ["check_exporter", "read_exported_tensors"]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays (detectron2's ``.pkl`` format) and nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")


def read_exported_tensors(path: str) -> dict[str, Tensor]:
    """The tensors of an exported file (``.pth``, ``.safetensors``, detectron2 ``.pkl``), read safely;
    a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper is unwrapped."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        obj: Any = load_file(path)
    elif path.endswith(".pkl"):
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f).load()
    else:
        obj = safe_torch_load(path)
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise AssertionError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, Tensor):
            raise AssertionError(f"{path}: {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


def _fingerprint(t: Tensor) -> tuple[str, tuple[int, ...], str]:
    t = t.detach().cpu().contiguous()
    return hashlib.sha1(t.numpy().tobytes()).hexdigest(), tuple(t.shape), str(t.dtype)


def check_exporter(name: str, ckpt_path: str | os.PathLike, tmp_dir: str | os.PathLike, *,
                   suffix: str = ".pth", which: tuple[str, ...] = ("teacher", "student"),
                   **opts: Any) -> dict[str, ExportReport]:
    """Export ``ckpt_path`` with exporter ``name`` into ``tmp_dir`` and check the round trip.

    Args:
        name: a registered exporter (``objssl.registry.EXPORTERS``).
        ckpt_path: an objssl checkpoint (e.g. 1-2 steps of ``objssl pretrain`` on a tiny model).
        tmp_dir: an empty folder to write into.
        suffix: the output file's ending (``.pth``; ``.pkl``/``.safetensors`` where supported).
        which: the branches to export.
        **opts: exporter options (``layout="c4"``, ...).

    Returns:
        the :class:`ExportReport` of each branch.

    Raises:
        AssertionError: naming what broke the contract.
    """
    from objssl.registry import EXPORTERS

    exporter = EXPORTERS.get(name)
    ckpt = load_checkpoint(ckpt_path)
    reports = {}
    for branch in which:
        out = os.path.join(os.fspath(tmp_dir), f"{name}_{branch}{suffix}")
        report = exporter(ckpt, out, which=branch, **opts)
        assert isinstance(report, ExportReport), f"{name}: returned {type(report).__name__}, not an ExportReport"
        assert os.path.isfile(out), f"{name}: reported success but wrote no {out}"
        leftovers = [f for f in os.listdir(tmp_dir) if f.startswith(".tmp")]
        assert not leftovers, f"{name}: temp files left behind: {leftovers}"
        tensors = read_exported_tensors(out)
        assert tensors, f"{name}: {out} holds no tensors"
        assert sorted(tensors) == sorted(report.written), (
            f"{name}: report.written differs from the file's keys "
            f"(only in file: {sorted(set(tensors) - set(report.written))[:5]}, "
            f"only in report: {sorted(set(report.written) - set(tensors))[:5]})")
        prefix = branch_prefix(branch) + "."
        source = Counter(_fingerprint(v) for k, v in checkpoint_model(ckpt).items() if k.startswith(prefix))
        foreign = [k for k, v in tensors.items() if _fingerprint(v) not in source]
        assert not foreign, f"{name} ({branch}): tensors not taken unchanged from the {branch} branch: {foreign[:5]}"
        exported = Counter(_fingerprint(v) for v in tensors.values())
        needed = Counter(_fingerprint(v) for k, v in backbone_state_dict(ckpt, branch).items()
                         if k not in set(report.skipped))
        lost = needed - exported
        assert not lost, f"{name} ({branch}): {sum(lost.values())} backbone tensors neither exported nor reported skipped"
        reports[branch] = report
    return reports
