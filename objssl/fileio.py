"""Crash-safe file writing shared by checkpoints and proposal caches."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "atomic_write", "TEMP_PREFIX", "current_umask", "remove_stale_temp_files", "sha256_file",
    "json_body_sha256", "write_checked_json", "checked_json_ok",
]

#: name prefix of the temp files :func:`atomic_write` renames into place
TEMP_PREFIX = ".tmp_"


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # elsewhere the only way to read it is to set it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temp file in the same folder, fsync, rename over
    ``path``, then fsync the folder so the rename itself is durable.

    A crash at any moment leaves either the old file or the new one, never a torn one; the temp
    file is removed if ``write`` fails (a kill leaves it behind: see :func:`remove_stale_temp_files`).
    The folder is created if needed. The file gets the permissions of any newly created file
    (``0o666`` less the umask), not ``mkstemp``'s owner-only ``0o600``, so a shared cache stays
    readable by the others who share it.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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


def remove_stale_temp_files(folder: str, older_than: float) -> tuple[int, int]:
    """Delete the :func:`atomic_write` temp files in ``folder`` last modified before ``older_than``
    (a ``time.time()`` value, e.g. when this process started): leftovers of a killed writer.

    Younger ones may belong to a writer that is still running and are kept. Returns
    ``(files removed, bytes freed)``; a missing folder is ``(0, 0)``.
    """
    removed = freed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime >= older_than:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:  # removed meanwhile by someone else
            continue
        removed += 1
        freed += info.st_size
    return removed, freed


def sha256_file(path: str) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_body_sha256(obj: dict[str, Any]) -> str:
    """sha256 of ``obj`` without its ``"checksum"`` field, canonically encoded (sorted keys)."""
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_checked_json(path: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` atomically with a ``"checksum"`` field: :func:`json_body_sha256` of the rest."""
    obj = {**obj, "checksum": json_body_sha256(obj)}
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True)), mode="w")


def checked_json_ok(obj: Any) -> bool:
    """Whether ``obj`` (a parsed JSON value) is an object whose ``"checksum"`` matches its body."""
    return isinstance(obj, dict) and obj.get("checksum") == json_body_sha256(obj)
