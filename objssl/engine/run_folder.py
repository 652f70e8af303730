"""The run folder ``OUT``: usable, not somebody else's run, and free of a killed writer's leftovers."""

from __future__ import annotations

import glob
import logging
import os
import time

from objssl.errors import UserError
from objssl.fileio import remove_stale_temp_files

__all__ = ["check_out_path", "claim_out_folder", "clean_temp_files"]

log = logging.getLogger("objssl.train")


def check_out_path(out: str) -> None:
    """``train.out`` must be a folder or creatable as one: not a file, not under a file."""
    path = os.path.abspath(out)
    probe = path
    while True:
        if os.path.exists(probe):
            if not os.path.isdir(probe):
                where = "is a file" if probe == path else f"is under {probe!r}, which is a file"
                raise UserError(f"train.out={out!r} {where}; choose a folder")
            if not os.access(probe, os.W_OK | os.X_OK):
                raise UserError(f"train.out={out!r}: {probe!r} is not writable")
            return
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent


def claim_out_folder(out: str, ckpt_dir: str, *, resume: bool, overwrite: bool, is_main: bool) -> str | None:
    """Refuse to start a fresh run over a run's checkpoints, unless ``resume`` or ``overwrite``;
    with ``overwrite`` the old run is moved aside to ``OUT.old-<UTC time>`` (returned; main
    process only)."""
    check_out_path(out)
    found = sorted(glob.glob(os.path.join(ckpt_dir, "step_*.pth")))
    if resume or not found:
        return None
    if not overwrite:
        raise UserError(
            f"train.out={out!r} already holds a run ({len(found)} checkpoint(s), newest "
            f"{os.path.basename(found[-1])}): pass --resume to continue it, --overwrite to move it aside, "
            "or choose another --out"
        )
    if not is_main:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = f"{os.path.abspath(out).rstrip(os.sep)}.old-{stamp}"
    n = 1
    while os.path.exists(aside):
        aside = f"{os.path.abspath(out).rstrip(os.sep)}.old-{stamp}-{n}"
        n += 1
    os.replace(out, aside)
    log.warning("--overwrite: the previous run in %s was moved to %s", out, aside)
    return aside


def clean_temp_files(ckpt_dir: str, started: float) -> None:
    """Remove the temp files a killed checkpoint write left in ``ckpt_dir`` (older than ``started``)."""
    count, size = remove_stale_temp_files(ckpt_dir, older_than=started)
    if count:
        log.warning("removed %d temp file(s) (%.1f MB) left in %s by an interrupted checkpoint write",
                    count, size / 1e6, ckpt_dir)
