"""The proposal-cache folder format: file names, flags, image keys, and checksummed files.

Layout of a cache folder::

    build.json            the settings of the build writing this folder (source key, max_side, ...)
    meta.json             source name/version/params/cache key, data root, counts, and the sha256
                          of every other file; it carries its own checksum (``"checksum"``)
    images.txt            one image key per line (its path relative to the data root), line i = image i
    index.npy             int64 [N, 4]: shard, offset, count, flags of image i
    sizes.npy             int32 [N, 2]: height, width of image i (0, 0 if it could not be read)
    shard-00000.npy       int16 [M, 4]: x1, y1, x2, y2 (pixels, rounded) of the images in shard 0
    shard-00000.json      the shard's image keys, per-image counts/flags/sizes, the sha256 of its
                          ``.npy``, and its own checksum

Every file is covered by a checksum: ``meta.json`` and the shard manifests by their own
``"checksum"`` field, everything else by a sha256 recorded in ``meta.json`` (and, for a shard's
data, in its manifest). A reader names the first file that does not match; ``objssl proposals``
rerun with the same arguments recomputes that file and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from objssl.errors import DataError
from objssl.fileio import atomic_write, json_body_sha256, sha256_file
from objssl.images.tar_shards import split_member_path

__all__ = [
    "FORMAT", "FORMAT_VERSION", "FLAG_FALLBACK", "FLAG_UNREADABLE", "FLAG_EMPTY", "FALLBACK_BOXES",
    "ProposalCacheError", "shard_name", "sha256_file", "keys_sha256", "write_checked_json",
    "read_checked_json", "relative_key", "data_root",
]

FORMAT = "objssl-proposals"
#: 2: every file checksummed (meta.json and manifests self-checked, index/sizes/images.txt in meta)
FORMAT_VERSION = 2
FLAG_FALLBACK = 1  # the source found nothing; the boxes are the random fallback
FLAG_UNREADABLE = 2  # the image could not be decoded; no boxes
FLAG_EMPTY = 4  # the source found nothing and fallback="none": no boxes
FALLBACK_BOXES = 16  # random boxes given to an image without proposals
RERUN_HINT = "run `objssl proposals` again with the same arguments: it recomputes it"


class ProposalCacheError(DataError):
    """A proposal cache that is unfinished, corrupt, or built for other images or another source."""


def shard_name(i: int) -> str:
    """``"shard-00012"``: the stem of shard ``i``'s ``.npy`` data and ``.json`` manifest."""
    return f"shard-{i:05d}"


def keys_sha256(keys: Sequence[str]) -> str:
    """sha256 of an ordered list of image keys (the identity of an image list or a shard's images)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


_body_sha256 = json_body_sha256


def write_checked_json(path: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` atomically with a ``"checksum"`` field: the sha256 of the rest, canonically encoded."""
    obj = {**obj, "checksum": _body_sha256(obj)}
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True)), mode="w")


def read_checked_json(path: str, *, required: bool = True) -> dict[str, Any]:
    """The object written by :func:`write_checked_json`; :class:`ProposalCacheError` naming ``path``
    if it is not valid JSON or its checksum does not match (``required=False``: the checksum may be
    absent, as in format version 1 files)."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProposalCacheError(f"{path} is corrupt (not valid JSON: {exc}); {RERUN_HINT}") from None
    if not isinstance(obj, dict):
        raise ProposalCacheError(f"{path} is corrupt (not a JSON object); {RERUN_HINT}")
    if "checksum" in obj or required:
        if obj.get("checksum") != _body_sha256(obj):
            raise ProposalCacheError(f"{path} is corrupt (checksum mismatch); {RERUN_HINT}")
    return obj


def relative_key(path: str, root: str) -> str:
    """The key of image ``path`` in a cache whose data root is ``root``: its real path relative to
    ``root`` with ``/`` separators, or its real absolute path if it is not under ``root``."""
    real = os.path.realpath(path)
    try:
        rel = os.path.relpath(real, root)
    except ValueError:  # another drive (Windows)
        return real.replace(os.sep, "/")
    return real.replace(os.sep, "/") if rel.startswith("..") else rel.replace(os.sep, "/")


def _folder(path: str) -> str:
    member = split_member_path(path)  # an image in a tar shard: the shard's folder
    return os.path.dirname(os.path.realpath(member[0] if member else path))


def data_root(paths: Sequence[str]) -> str:
    """The deepest folder holding every path (the default data root of a cache); for images in tar
    shards (``<shard>.tar/<key>``), the folder holding the shards, so keys read ``<shard>.tar/<key>``."""
    reals = [_folder(p) for p in paths]
    return os.path.commonpath(reals) if reals else os.getcwd()
