"""Writing an exporter's output file: atomically, with one-line errors for a bad path or a full disk."""

from __future__ import annotations

import errno
import os
from typing import Any

from objssl.checkpoint import atomic_save
from objssl.errors import UserError
from objssl.fileio import atomic_write

__all__ = ["check_output_path", "save_torch_output", "save_bytes_output"]


def check_output_path(path: str, what: str) -> None:
    """Refuse an output that is a folder, or that lies under a file (one line, naming both)."""
    if os.path.isdir(path):
        raise UserError(f"{what}: output {path!r} is a folder; give a file name inside it")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{what}: cannot write {path!r}: {parent!r} is a file, not a folder")


def save_torch_output(obj: Any, path: str, what: str) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (a failed write leaves nothing behind)."""
    check_output_path(path, what)
    atomic_save(obj, path)


def save_bytes_output(data: bytes, path: str, what: str) -> None:
    """Write ``data`` to ``path`` atomically (a failed write leaves nothing behind)."""
    check_output_path(path, what)
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        code = errno.errorcode.get(exc.errno, exc.errno) if exc.errno is not None else type(exc).__name__
        raise UserError(f"{what}: cannot write {path!r}: {code}: {exc.strerror or exc}") from exc
