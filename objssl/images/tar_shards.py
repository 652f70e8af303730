"""WebDataset tar shards as random-access image files: a member index per shard, reads by seeking.

A shard is a plain (uncompressed) tar whose members are named ``<key>.<ext>`` (the WebDataset
convention: the key is the member name up to the first dot of its base name). The image of a key is
its first member with an image extension (:data:`objssl.images.sources.IMAGE_EXTENSIONS`); other
members (``.json``, ``.cls``, ...) are ignored, and so are keys without an image.

An image in a shard is named ``<shard path>/<key>`` (:func:`member_path`), e.g.
``/data/shards/train-000003.tar/00031337``. That name is what the data set, the proposal caches and
the logs use, so everything that reads an image file also reads a shard's images
(:func:`objssl.images.decode.load_rgb` recognises the name, :func:`split_member_path`).

The index of a shard (key, member name, data offset and size of every image) is read once with
:mod:`tarfile` (headers only, no image data) and kept in memory for the process; it is also
written next to the shard as ``<shard>.index.json`` (when that folder is writable), checksummed
and tied to the shard's size and modification time, so DataLoader workers and later runs read it
instead of walking the tar again. A stale or damaged index file is silently rebuilt.

A shard that is truncated or corrupt (a header that does not parse, a member running past the
end of the file, no end-of-archive marker) is a :class:`~objssl.errors.DataError` naming the shard,
raised when the data source is listed, before any training: its members cannot be trusted, and
silently dropping part of it would change the data set's size (and so every sample's position)
between two listings. A corrupt *member* (bytes that do not decode) is an ordinary bad image: a
counted skip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from typing import NamedTuple

from objssl.errors import DataError

__all__ = [
    "SHARD_EXTENSION", "Member", "member_path", "split_member_path", "shard_members",
    "read_member", "is_shard_pattern", "expand_shard_pattern", "index_file",
]

log = logging.getLogger(__name__)

SHARD_EXTENSION = ".tar"
INDEX_SUFFIX = ".index.json"
INDEX_FORMAT = "objssl-tar-index"
INDEX_VERSION = 1
_BLOCK = 512

# shard path -> {key: Member}; filled on first use in each process
_INDEX: dict[str, dict[str, Member]] = {}


class Member(NamedTuple):
    """One image of a shard: its key, tar member name, and where its bytes are."""

    key: str
    name: str
    offset: int  # of the data, in bytes from the start of the tar
    size: int


def member_path(shard: str, key: str) -> str:
    """The name of the image ``key`` of ``shard``: ``<shard>/<key>``."""
    return f"{shard}/{key}"


def split_member_path(path: str) -> tuple[str, str] | None:
    """``(shard, key)`` if ``path`` names an image inside a ``.tar`` shard, else None.

    Only a string test unless ``path`` contains ``.tar/``; then the shard part must be a file.
    """
    marker = SHARD_EXTENSION + "/"
    start = 0
    while (at := path.find(marker, start)) >= 0:
        shard, key = path[: at + len(SHARD_EXTENSION)], path[at + len(marker):]
        if key and (shard in _INDEX or os.path.isfile(shard)):
            return shard, key
        start = at + 1
    return None


def _key_and_extension(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + ext).lower()


def index_file(shard: str) -> str:
    """Where the member index of ``shard`` is cached: ``<shard>.index.json``."""
    return shard + INDEX_SUFFIX


def _scan(shard: str, image_extensions: tuple[str, ...]) -> list[Member]:
    """Walk the tar headers of ``shard``; DataError naming it if the archive is damaged."""
    size = os.path.getsize(shard)
    members: list[Member] = []
    seen: set[str] = set()
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for info in tar:
                if info.offset_data + info.size > size:
                    raise DataError(
                        f"tar shard {shard} is truncated: member {info.name!r} needs bytes up to "
                        f"{info.offset_data + info.size}, the file has {size}; rewrite the shard "
                        "or remove it from the data"
                    )
                if not info.isfile():
                    continue
                key, ext = _key_and_extension(info.name)
                if key in seen or not ext.endswith(image_extensions):
                    continue
                seen.add(key)
                members.append(Member(key, info.name, info.offset_data, info.size))
            end = tar.offset  # where tarfile stopped: the end-of-archive marker, or damage
    except tarfile.TarError as exc:
        raise DataError(f"tar shard {shard} is not a readable tar file ({exc}); rewrite the shard "
                        "or remove it from the data") from None
    _check_tail(shard, end, size)
    return members


def _check_tail(shard: str, end: int, size: int) -> None:
    """After the last member only zero blocks may follow (tarfile stops quietly at a bad header)."""
    if size - end < 2 * _BLOCK:
        raise DataError(f"tar shard {shard} is truncated (no end-of-archive marker after byte {end}); "
                        "rewrite the shard or remove it from the data")
    with open(shard, "rb") as f:
        f.seek(end)
        position = end
        while chunk := f.read(1 << 20):
            if chunk.count(0) != len(chunk):
                first = position + next(i for i, b in enumerate(chunk) if b)
                raise DataError(
                    f"tar shard {shard} is corrupt: unreadable data at byte {first} after the last "
                    "valid member; rewrite the shard or remove it from the data"
                )
            position += len(chunk)


def _stamp(shard: str) -> dict[str, int]:
    st = os.stat(shard)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _body_sha256(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_index_file(shard: str) -> list[Member] | None:
    try:
        with open(index_file(shard), encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    if (not isinstance(obj, dict) or obj.get("format") != INDEX_FORMAT
            or obj.get("version") != INDEX_VERSION or obj.get("checksum") != _body_sha256(obj)
            or obj.get("shard") != _stamp(shard)):
        return None
    return [Member(*m) for m in obj["members"]]


def _write_index_file(shard: str, members: list[Member]) -> None:
    from objssl.fileio import atomic_write

    obj = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "shard": _stamp(shard),
           "members": [list(m) for m in members]}
    obj["checksum"] = _body_sha256(obj)
    try:
        atomic_write(index_file(shard), lambda f: f.write(json.dumps(obj)), mode="w")
    except OSError as exc:  # a read-only data folder: the in-memory index serves this process
        log.debug("cannot cache the index of %s (%s)", shard, exc)


def shard_members(shard: str) -> list[Member]:
    """The images of ``shard`` in tar order (read once per process; cached next to the shard).

    Raises:
        DataError: the shard is missing, not a tar, truncated or corrupt (names the shard).
    """
    from objssl.images.sources import IMAGE_EXTENSIONS

    cached = _INDEX.get(shard)
    if cached is not None:
        return list(cached.values())
    if not os.path.isfile(shard):
        raise DataError(f"tar shard {shard} does not exist")
    members = _read_index_file(shard)
    if members is None:
        members = _scan(shard, IMAGE_EXTENSIONS)
        _write_index_file(shard, members)
    _INDEX[shard] = {m.key: m for m in members}
    return members


def read_member(shard: str, key: str) -> bytes:
    """The bytes of image ``key`` of ``shard``, read by seeking to its offset.

    Raises:
        KeyError: the shard has no image ``key``.
        OSError: the shard cannot be read, or ends before the member does (it changed since it
            was indexed).
    """
    if shard not in _INDEX:
        shard_members(shard)
    m = _INDEX[shard][key]
    with open(shard, "rb") as f:
        f.seek(m.offset)
        data = f.read(m.size)
    if len(data) != m.size:
        raise OSError(f"member {m.name} is cut short ({len(data)} of {m.size} bytes): the shard "
                      "changed after it was indexed")
    return data


def is_shard_pattern(path: str) -> bool:
    """Whether ``path`` is a brace pattern of shards, e.g. ``train-{000000..000009}.tar``."""
    return "{" in path and "}" in path and path.endswith(SHARD_EXTENSION)


def expand_shard_pattern(pattern: str) -> list[str]:
    """The shard files of a brace pattern, in its order; DataError naming the first missing one."""
    try:
        from braceexpand import braceexpand
    except ImportError:
        raise DataError(f"data path {pattern} is a brace pattern of shards: it needs the optional "
                        "extra wds (pip install objssl[wds])") from None
    shards = [os.path.abspath(p) for p in braceexpand(pattern)]
    missing = [p for p in shards if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{len(missing)} of the {len(shards)} shards of {pattern} do not exist "
                        f"(first: {missing[0]})")
    return shards
