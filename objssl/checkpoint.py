"""objssl checkpoints: written atomically (temp file + fsync + rename), the last N kept, read back on the CPU.

An objssl checkpoint is a ``torch.save`` dict::

    {"format": "objssl-checkpoint", "version": 1, "method": "byol",
     "backbone": {"name": "resnet50", "kwargs": {...}},
     "model": <method.state_dict()>, "config": {...}, ...training state...}

Inside ``model`` the online (student) parts sit under ``online.<part>.`` and the EMA teacher's under
``target.<part>.``; a backbone's weights are under ``<branch>.backbone.model.`` with exactly timm's keys.
"""

from __future__ import annotations

import glob
import os
import random
import re
from typing import Any

import numpy as np
import torch

from objssl.errors import UserError
from objssl.fileio import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "save_checkpoint",
    "find_latest_checkpoint",
    "rng_state",
    "set_rng_state",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = "objssl-checkpoint"
_NAME = "step_{:08d}.pth"
_PATTERN = re.compile(r"step_(\d{8})\.pth$")


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically (:func:`objssl.fileio.atomic_write`).

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], folder: str, step: int, keep_last: int) -> str:
    """Write ``folder/step_XXXXXXXX.pth`` atomically, then delete all but the newest ``keep_last``."""
    state = {"format": CHECKPOINT_FORMAT, "version": 1, **state}
    path = os.path.join(folder, _NAME.format(step))
    atomic_save(state, path)
    existing = sorted(glob.glob(os.path.join(folder, "step_*.pth")))
    for old in existing[:-keep_last]:
        os.unlink(old)
    return path


def find_latest_checkpoint(folder: str) -> str | None:
    """The newest ``step_*.pth`` in ``folder``, or None."""
    found = [p for p in glob.glob(os.path.join(folder, "step_*.pth")) if _PATTERN.search(p)]
    return max(found, key=lambda p: int(_PATTERN.search(p).group(1))) if found else None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an objssl checkpoint on the CPU; a clear error if it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle / zip errors of every kind
        raise UserError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path!r} is not an objssl checkpoint (no format={CHECKPOINT_FORMAT!r} entry); "
            "objssl writes them as OUT/checkpoints/*.pth"
        )
    return ckpt
