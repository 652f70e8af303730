"""Crash-safe file writing shared by checkpoints and proposal caches."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

__all__ = ["atomic_write"]


def atomic_write(path: str, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temp file in the same folder, fsync, rename over
    ``path``, then fsync the folder so the rename itself is durable.

    A crash at any moment leaves either the old file or the new one, never a torn one; the temp
    file is removed if ``write`` fails. The folder is created if needed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems cannot fsync a folder
        pass
