"""objssl checkpoints: written atomically with their sha256 inside, read back safely on the CPU.

An objssl checkpoint is a ``torch.save`` dict::

    {"format": "objssl-checkpoint", "version": 1, "method": "byol",
     "backbone": {"name": "resnet50", "kwargs": {...}},
     "model": <method.state_dict()>, "config": {...}, ...training state...}

Inside ``model`` the online (student) parts sit under ``online.<part>.`` and the EMA teacher's under
``target.<part>.``; a backbone's weights are under ``<branch>.backbone.model.`` with exactly timm's keys.

What this module promises:

* **Nothing but data is unpickled.** Every read uses ``torch.load(weights_only=True)``: tensors,
  numbers, strings and plain containers. A file holding anything else (a crafted pickle that would
  run code) is refused with one line, before any of it runs. Only version-1 files written by older
  objssl hold something more, numpy's RNG state; for those exactly numpy's array-rebuilding globals
  are allowed, nowhere else. objssl itself now writes only tensors and plain values.
* **Damage is detected.** Each checkpoint carries the sha256 of its bytes inside it, as the zip
  archive's comment (``objssl-sha256:<hex>``; the file stays an ordinary torch/zip file, and the sum
  travels with it when it is copied alone). :func:`load_checkpoint` refuses a file whose bytes no
  longer match (:class:`CheckpointCorruptError`). Files of older objssl carry none: their zip
  archive's own CRC-32s are checked instead and a note is logged.
* **Writing fails loudly and leaves the old state intact.** A full disk or any other OS error while
  writing is one :class:`CheckpointWriteError` naming the file; no temp file stays behind and the
  earlier checkpoints are untouched. A state holding NaN/Inf is refused
  (:class:`NonFiniteCheckpointError`) instead of replacing good checkpoints.
* **Rotation keeps a checkpoint to resume from.** ``keep_last`` never deletes the newest checkpoint
  that verifies, even when newer ones are damaged; :func:`find_resumable_checkpoint` returns it
  together with the damaged newer ones and why.
* **Old layouts are upgraded on load.** Checkpoints older than :data:`CHECKPOINT_VERSION` (the layout
  this code's methods have) get their keys renamed to it (:data:`V1_TO_V2_RENAMES`), so that
  ``--resume`` and the exporters see one layout; code written against version 2 (the detectron2
  part mappers) reads any file through ``upgrade_checkpoint(ckpt, 2)``, a no-op on version-2 keys.
  Files of a newer objssl (version > :data:`NEWEST_KNOWN_VERSION`) are refused.

This is the bottom layer: it imports only :mod:`objssl.errors` and :mod:`objssl.fileio`.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import pickle
import random
import re
import struct
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from objssl.errors import UserError
from objssl.fileio import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "NEWEST_KNOWN_VERSION",
    "V1_TO_V2_RENAMES",
    "CheckpointError",
    "CheckpointCorruptError",
    "CheckpointWriteError",
    "NonFiniteCheckpointError",
    "NotAnObjsslCheckpointError",
    "atomic_save",
    "save_checkpoint",
    "find_latest_checkpoint",
    "find_resumable_checkpoint",
    "verify_checkpoint",
    "rng_state",
    "set_rng_state",
    "safe_torch_load",
    "check_checkpoint",
    "upgrade_checkpoint",
    "load_checkpoint",
]

log = logging.getLogger("objssl.checkpoint")

CHECKPOINT_FORMAT = "objssl-checkpoint"
#: the layout version this code writes (the state-dict layout of its methods)
CHECKPOINT_VERSION = 2
#: the newest layout objssl knows how to read; a file with a higher version is refused
NEWEST_KNOWN_VERSION = 2
_NAME = "step_{:08d}.pth"
_PATTERN = re.compile(r"step_(\d{8})\.pth$")
_CHECKSUM_SUFFIX = ".sha256"

#: version-1 → version-2 state-dict renames, per method name: ``(old key prefix, new key prefix)``.
#: Pure data: the objective-term refactor moved each method's heads under its term's name.
V1_TO_V2_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "byol": (
        ("online.projector.", "online.byol_global.projector."),
        ("online.predictor.", "online.byol_global.predictor."),
        ("target.projector.", "target.byol_global.projector."),
    ),
    "soco": (
        ("online.box_head.", "online.soco_boxes.box_head."),
        ("online.projector.", "online.soco_boxes.projector."),
        ("online.predictor.", "online.soco_boxes.predictor."),
        ("target.box_head.", "target.soco_boxes.box_head."),
        ("target.projector.", "target.soco_boxes.projector."),
    ),
    "soco_c4": (
        ("online.projector.", "online.soco_c4_boxes.projector."),
        ("online.predictor.", "online.soco_c4_boxes.predictor."),
        ("target.projector.", "target.soco_c4_boxes.projector."),
    ),
    "slotcon": (
        ("online.projector.", "online.slotcon.projector."),
        ("online.grouping.", "online.slotcon.grouping."),
        ("online.predictor.", "online.slotcon_slots.predictor."),
        ("target.projector.", "target.slotcon.projector."),
        ("target.grouping.", "target.slotcon.grouping."),
        ("pixel_loss.", "objectives.slotcon_pixel."),
    ),
}
V1_TO_V2_RENAMES["soco_star"] = V1_TO_V2_RENAMES["soco"]

#: what version-1 files of older objssl hold besides tensors: numpy's RNG state (a uint32 array).
#: Exactly the globals numpy arrays are rebuilt with; numpy 1.x pickles name ``numpy.core``.
_NUMPY_RECONSTRUCT = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
_LEGACY_NUMPY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
    (_NUMPY_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (_NUMPY_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
]


class CheckpointError(UserError):
    """A checkpoint that cannot be written or used (the message names the file)."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint whose bytes changed after objssl wrote it (checksum or zip CRC mismatch)."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (disk full, permissions, ...); the earlier checkpoints are intact."""


class NotAnObjsslCheckpointError(CheckpointError):
    """A readable file that is not an objssl checkpoint (e.g. plain timm weights)."""


class NonFiniteCheckpointError(CheckpointError):
    """The state to save holds NaN or Inf; saving it would replace good checkpoints with a diverged one."""


# ------------------------------------------------------------------------------------ writing
#: the checksum travels inside the file, as the zip archive's comment: ``objssl-sha256:<64 hex>``
_SEAL_TAG = b"objssl-sha256:"
_SEAL_LEN = len(_SEAL_TAG) + 64
_EOCD_LEN = 22  # zip end-of-central-directory record (without comment); its last 2 bytes: comment length
_EOCD_SIG = b"PK\x05\x06"


class _SealingWriter:
    """A write-only file wrapper for ``torch.save``: hashes what passes through, keeps the last bytes
    (the archive's end record) and the first OS error (torch.save turns it into a bare
    ``RuntimeError: [enforce fail at inline_container.cc...]`` that no longer says what went wrong)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.tail = b""
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            n = self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise
        self.sha.update(data)
        self.tail = (self.tail + bytes(data))[-_EOCD_LEN:]
        return n

    def flush(self) -> None:
        self._f.flush()

    def seal(self) -> bool:
        """Append the sha256 as the archive comment (torch.save wrote none); False if the file does
        not end in a comment-less zip end record (then it stays unsealed and CRC-checked)."""
        if len(self.tail) != _EOCD_LEN or not self.tail.startswith(_EOCD_SIG) or self.tail[-2:] != b"\0\0":
            return False
        self._f.seek(-2, os.SEEK_END)
        self._f.write(struct.pack("<H", _SEAL_LEN))
        self._f.seek(0, os.SEEK_END)
        self._f.write(_SEAL_TAG + self.sha.hexdigest().encode("ascii"))
        return True


def _is_torch_write_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and ("inline_container" in str(exc) or "PytorchStreamWriter" in str(exc))


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def atomic_save(obj: Any, path: str, *, seal: bool = False) -> None:
    """``torch.save`` to ``path`` atomically (:func:`objssl.fileio.atomic_write`).

    A crash at any moment leaves either the old file or the new one, never a torn one. Any OS error
    (also one torch reports as an ``inline_container`` error) is a :class:`CheckpointWriteError`
    naming ``path``; the temp file is removed. ``seal`` stores the file's sha256 inside it.
    """
    writers: list[_SealingWriter] = []

    def write(f: IO[bytes]) -> None:
        writers.append(_SealingWriter(f))
        torch.save(obj, writers[-1])
        if seal and not writers[-1].seal():
            log.warning("%s: unexpected archive layout, written without a checksum", path)

    try:
        atomic_write(path, write)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _is_torch_write_error(exc):
            raise
        cause = (writers[-1].error if writers and writers[-1].error else None) or exc
        if isinstance(cause, OSError) and cause.errno is not None:
            reason = f"{errno.errorcode.get(cause.errno, cause.errno)}: {cause.strerror or cause}"
        else:
            reason = _one_line(cause)
        raise CheckpointWriteError(f"cannot write {path!r}: {reason} (nothing was replaced or left behind)") from exc


def _read_seal(path: str) -> tuple[str, str] | None:
    """``(stored sha256, sha256 of the bytes now)`` of a sealed file, or None if it carries no seal."""
    size = os.path.getsize(path)
    if size < _EOCD_LEN + _SEAL_LEN:
        return None
    with open(path, "rb") as f:
        f.seek(size - _EOCD_LEN - _SEAL_LEN)
        end = f.read()
        if not (end.startswith(_EOCD_SIG) and end[_EOCD_LEN - 2:_EOCD_LEN] == struct.pack("<H", _SEAL_LEN)
                and end[_EOCD_LEN:].startswith(_SEAL_TAG)):
            return None
        stored = end[_EOCD_LEN + len(_SEAL_TAG):].decode("ascii", "replace")
        # the digest is of the archive as torch.save wrote it: comment length 0, no comment
        sha, remaining = hashlib.sha256(), size - _SEAL_LEN - 2
        f.seek(0)
        while remaining > 0:
            block = f.read(min(1 << 20, remaining))
            if not block:
                break
            sha.update(block)
            remaining -= len(block)
        sha.update(b"\0\0")
    return stored, sha.hexdigest()


def _tensors(obj: Any, where: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}[{i}]")


def _check_finite(state: dict[str, Any]) -> None:
    for where, t in _tensors(state, "checkpoint"):
        if t.is_floating_point() or t.is_complex():
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteCheckpointError(
                    f"refusing to save: {where} holds NaN/Inf (training diverged); the earlier checkpoints are kept"
                )


def _step_files(folder: str) -> list[str]:
    """``step_*.pth`` in ``folder``, oldest step first."""
    found = [p for p in glob.glob(os.path.join(folder, "step_*.pth")) if _PATTERN.search(p)]
    return sorted(found, key=lambda p: int(_PATTERN.search(p).group(1)))


def save_checkpoint(state: dict[str, Any], folder: str, step: int, keep_last: int) -> str:
    """Write ``folder/step_XXXXXXXX.pth`` (sha256 inside) atomically, then delete all but the newest
    ``keep_last`` (never the newest one that verifies).

    Raises:
        NonFiniteCheckpointError: a floating tensor of ``state`` holds NaN/Inf (names the first).
        CheckpointWriteError: the file could not be written (names it and the OS error).
    """
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    _check_finite(state)
    path = os.path.join(folder, _NAME.format(step))
    atomic_save(state, path, seal=True)
    _rotate(folder, keep_last, just_written=path)
    return path


def _rotate(folder: str, keep_last: int, just_written: str) -> None:
    existing = _step_files(folder)
    doomed = existing[: max(len(existing) - keep_last, 0)]
    if not doomed:
        return
    for candidate in reversed(existing):  # the newest good one survives even when newer ones are damaged
        if candidate == just_written or verify_checkpoint(candidate) is None:
            if candidate in doomed:
                doomed.remove(candidate)
                log.warning("keeping %s: it is the newest checkpoint that verifies", candidate)
            break
    for old in doomed:
        os.unlink(old)


# ------------------------------------------------------------------------------------ finding
def find_latest_checkpoint(folder: str) -> str | None:
    """The newest ``step_*.pth`` in ``folder``, or None (not verified: see :func:`find_resumable_checkpoint`)."""
    found = _step_files(folder)
    return found[-1] if found else None


def verify_checkpoint(path: str | os.PathLike) -> str | None:
    """Why ``path``'s bytes are not as objssl wrote them, or None if they are.

    Checks the sha256 stored inside the file; a file without one (older objssl) is checked against
    its zip archive's CRC-32s. Nothing is unpickled.
    """
    return _check_bytes(os.fspath(path))[0]


def _check_bytes(path: str) -> tuple[str | None, bool]:
    """``(reason the bytes are damaged or None, whether the file carries objssl's sha256)``."""
    seal = _read_seal(path)
    if seal is not None:
        stored, actual = seal
        if stored != actual:
            return "its bytes no longer match the sha256 objssl stored in it (the file changed after it was written)", True
        return None, True
    if not zipfile.is_zipfile(path):
        return None, False  # not a zip archive: nothing to check it against; torch.load decides
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"its zip archive is damaged ({_one_line(exc)})", False
    if bad is not None:
        return f"its zip member {bad!r} fails its CRC-32 (the file changed after it was written)", False
    return None, False


def find_resumable_checkpoint(folder: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest checkpoint in ``folder`` that verifies, and ``(path, reason)`` of each newer damaged one.

    The caller reports the damaged ones; resuming never skips them silently.
    """
    bad: list[tuple[str, str]] = []
    for path in reversed(_step_files(folder)):
        reason = verify_checkpoint(path)
        if reason is None:
            return path, bad
        bad.append((path, reason))
    return None, bad


# ------------------------------------------------------------------------------------ RNG
def rng_state() -> dict[str, Any]:
    """torch, numpy, python (and CUDA) RNG states, as tensors and plain values only."""
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s result (also version-1 files, whose numpy state is numpy's tuple)."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["algorithm"], numpy_state["keys"].numpy().astype(np.uint32),
                       numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ reading
def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors naming ``path``.

    A file holding objects other than tensors and plain data (anything that would run code while
    unpickling) is refused before any of it runs.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path!r} is a folder, not a file")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path!r} does not exist")
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            found = re.search(r"GLOBAL ([\w.]+)|but got <class '([^']+)'>", str(exc))
            what = f" ({found.group(1) or found.group(2)})" if found else ""
            raise UserError(
                f"{path!r} contains objects objssl does not load{what}: objssl reads only tensors and plain "
                "data, never code; if you trust the file, convert it to a plain state dict yourself"
            ) from None
        raise UserError(f"checkpoint {path!r} cannot be read: UnpicklingError: {_one_line(exc)}") from exc
    except Exception as exc:  # zip / unpickling errors of every kind on a damaged or foreign file
        raise UserError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {_one_line(exc)}") from exc


def upgrade_checkpoint(ckpt: dict[str, Any], to_version: int = NEWEST_KNOWN_VERSION) -> dict[str, Any]:
    """``ckpt`` with its keys renamed up to layout ``to_version`` (a new dict; the tensors are shared).

    Version 1 → 2 renames each method's head prefixes (:data:`V1_TO_V2_RENAMES`) and drops the
    method config key ``proposals`` (proposals live in the data config). Keys already in the new
    layout are left alone, so upgrading twice changes nothing.
    """
    version = int(ckpt.get("version", 1))
    if version >= to_version:
        return ckpt
    ckpt = dict(ckpt)
    if version < 2 <= to_version:
        renames = V1_TO_V2_RENAMES.get(str(ckpt.get("method")), ())
        if isinstance(ckpt.get("model"), dict):  # a file without one is refused later, by name
            model = {}
            for key, value in ckpt["model"].items():
                for old, new in renames:
                    if key.startswith(old):
                        key = new + key[len(old):]
                        break
                model[key] = value
            ckpt["model"] = model
        config = ckpt.get("config")
        if isinstance(config, dict) and isinstance(config.get("method"), dict) and "proposals" in config["method"]:
            ckpt["config"] = {**config, "method": {k: v for k, v in config["method"].items() if k != "proposals"}}
        version = 2
    ckpt["version"] = version
    return ckpt


def check_checkpoint(obj: Any, path: str) -> dict[str, Any]:
    """``obj`` (read from ``path``) as an objssl checkpoint of the current layout, or a one-line error."""
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise NotAnObjsslCheckpointError(
            f"{path!r} is not an objssl checkpoint (no format={CHECKPOINT_FORMAT!r} entry); "
            "objssl writes them as OUT/checkpoints/*.pth"
        )
    version = obj.get("version", 1)
    if not isinstance(version, int) or version > NEWEST_KNOWN_VERSION:
        raise UserError(
            f"checkpoint {path!r} has version {version!r}, newer than this objssl reads "
            f"(up to {NEWEST_KNOWN_VERSION}): upgrade objssl"
        )
    return upgrade_checkpoint(obj, CHECKPOINT_VERSION)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an objssl checkpoint on the CPU: verified, safely unpickled, upgraded to the current layout.

    Raises:
        CheckpointCorruptError: the file's bytes do not match its sha256 (or zip CRCs).
        UserError: missing file, a file holding code objects, not an objssl checkpoint, or a
            version newer than this objssl reads.
    """
    path = os.fspath(path)
    sealed = False
    if os.path.isfile(path):
        reason, sealed = _check_bytes(path)
        if reason is not None:
            raise CheckpointCorruptError(f"checkpoint {path!r} is damaged: {reason}")
    ckpt = check_checkpoint(safe_torch_load(path), path)
    if not sealed:
        log.info("checkpoint %s carries no sha256 (written by an older objssl): its zip CRC-32s were checked", path)
    return ckpt
