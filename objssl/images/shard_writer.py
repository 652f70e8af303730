"""Writing image files into WebDataset tar shards (``objssl data shard``).

Each image becomes one member ``<key><ext>``: its file's bytes unchanged (no re-encoding, so a file
that does not decode stays a member that does not decode, and is a counted skip when read), under
the key ``%08d`` of its position in the list. Shards are ``<prefix>-%06d.tar`` with ``shard_size``
images each; the output folder also gets

* ``<prefix>.txt``: the shard file names, one a line (a shard list: ``--data DIR/<prefix>.txt``);
* ``<prefix>-sources.tsv``: ``<shard name>/<key>``, a tab, and the source file, one image a line;
* each shard's member index (``<shard>.index.json``, :mod:`objssl.images.tar_shards`).

The bytes of a shard depend only on the images and their order (member times, owners and modes are
fixed), so sharding the same list twice gives identical files. Every file is written atomically.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from objssl.errors import DataError, UserError
from objssl.fileio import atomic_write
from objssl.images.tar_shards import SHARD_EXTENSION, shard_members

__all__ = ["ShardSummary", "write_shards", "shard_file_name"]


@dataclass
class ShardSummary:
    images: int
    shards: list[str]  # shard paths, in order
    list_file: str
    bytes: int


def shard_file_name(prefix: str, i: int) -> str:
    return f"{prefix}-{i:06d}{SHARD_EXTENSION}"


def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower() or ".img"


def _write_tar(f, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def write_shards(paths: Sequence[str], out: str, *, shard_size: int = 10000, prefix: str = "train",
                 root: str | None = None) -> ShardSummary:
    """Pack ``paths`` (in that order) into tar shards in folder ``out`` (see the module docstring).

    Args:
        root: source files are named relative to it in ``<prefix>-sources.tsv`` (default: absolute).

    Raises:
        UserError: ``shard_size < 1``, a prefix with a path separator, or ``out`` already holds
            shards with this prefix (they are never overwritten).
        DataError: a source file cannot be read (named).
    """
    if shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {shard_size}")
    if not prefix or "/" in prefix or os.sep in prefix:
        raise UserError(f"--prefix must be a plain file name prefix, got {prefix!r}")
    if not paths:
        raise DataError("no images to shard")
    os.makedirs(out, exist_ok=True)
    existing = sorted(n for n in os.listdir(out) if n.startswith(f"{prefix}-") and n.endswith(SHARD_EXTENSION))
    if existing:
        raise UserError(f"{out} already holds shards {prefix}-*{SHARD_EXTENSION} (e.g. {existing[0]}); "
                        "use another --out or --prefix, or delete them")
    shards: list[str] = []
    sources: list[str] = []
    total = 0
    for s, lo in enumerate(range(0, len(paths), shard_size)):
        name = shard_file_name(prefix, s)
        members = []
        for i in range(lo, min(lo + shard_size, len(paths))):
            key = f"{i:08d}"
            try:
                with open(paths[i], "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise DataError(f"cannot read image {paths[i]} ({exc.strerror or exc})") from None
            members.append((key + _extension(paths[i]), data))
            shown = os.path.relpath(paths[i], root) if root else paths[i]
            sources.append(f"{name}/{key}\t{shown}")
        shard = os.path.join(out, name)
        atomic_write(shard, lambda f, m=members: _write_tar(f, m))
        shard_members(shard)  # writes the member index next to it (and checks the shard reads back)
        shards.append(shard)
        total += os.path.getsize(shard)
    list_file = os.path.join(out, f"{prefix}.txt")
    atomic_write(list_file, lambda f: f.write("".join(os.path.basename(s) + "\n" for s in shards)), mode="w")
    atomic_write(os.path.join(out, f"{prefix}-sources.tsv"), lambda f: f.write("\n".join(sources) + "\n"), mode="w")
    return ShardSummary(images=len(paths), shards=shards, list_file=list_file, bytes=total)
