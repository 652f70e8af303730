"""Sharded proposal builds: one part of the image list per task of an array job, then one merge.

Part ``I`` of ``N`` holds whole cache shards: the data set's ``S = ceil(images / shard_size)``
shards (those a serial build writes) are split into ``N`` contiguous runs, part ``I`` taking shards
``floor(I*S/N)`` to ``floor((I+1)*S/N) - 1``. Each part is an ordinary, resumable cache folder
(``<out>/part-0000I-of-0000N``) whose ``meta.json`` records what it is part of (the whole list's
``images_sha256`` and size, its first image and shard). Because a cache shard's files do not name
its number, the merge only copies each part's shard files under their number in the whole cache and
writes the index: the merged folder is file for file what a serial build of the whole list writes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from objssl.errors import UserError
from objssl.fileio import atomic_write
from objssl.proposals.base import ProposalSource
from objssl.proposals.cache_builder import CacheSummary, _finalize, build_cache
from objssl.proposals.cache_format import (
    ProposalCacheError,
    data_root,
    keys_sha256,
    read_checked_json,
    relative_key,
    shard_name,
    write_checked_json,
)
from objssl.proposals.cache_reader import ProposalCache

__all__ = ["part_range", "part_folder_name", "build_part", "merge_parts"]

# build settings every part of one build shares (with the data root and the source's cache key)
_SHARED = ("cache_key", "max_side", "fallback", "shard_size", "root")


def part_folder_name(index: int, count: int) -> str:
    """``"part-00002-of-00008"``."""
    return f"part-{index:05d}-of-{count:05d}"


def part_range(num_images: int, shard_size: int, count: int, index: int) -> tuple[int, int]:
    """Images ``[lo, hi)`` of part ``index`` of ``count`` (whole shards of ``shard_size`` images).

    Raises:
        UserError: ``count < 1``, ``index`` outside ``0..count-1``, or more parts than shards.
    """
    if count < 1:
        raise UserError(f"--num-shards must be >= 1, got {count}")
    if not 0 <= index < count:
        raise UserError(f"--shard-index must be in 0..{count - 1} for --num-shards {count}, got {index}")
    shards = (num_images + shard_size - 1) // shard_size
    if count > shards:
        raise UserError(
            f"--num-shards {count} is more than the {shards} cache shards of {num_images} images at "
            f"--shard-size {shard_size}: lower --num-shards or --shard-size"
        )
    first, end = index * shards // count, (index + 1) * shards // count
    return first * shard_size, min(end * shard_size, num_images)


def build_part(source: ProposalSource, paths: Sequence[str], out: str, *, count: int, index: int,
               shard_size: int = 1000, root: str | None = None, **kwargs: Any) -> tuple[str, CacheSummary]:
    """Build part ``index`` of ``count`` of the cache of ``paths`` into ``out/part-...``; returns
    that folder and the build's summary. ``kwargs`` go to :func:`build_cache` (a rerun resumes)."""
    if not paths:
        raise UserError("no images to process")
    root = os.path.realpath(root) if root else data_root(paths)
    keys = [relative_key(p, root) for p in paths]
    lo, hi = part_range(len(paths), shard_size, count, index)
    part = {"index": index, "count": count, "first_image": lo, "first_shard": lo // shard_size,
            "num_images": len(paths), "images_sha256": keys_sha256(keys)}
    folder = os.path.join(out, part_folder_name(index, count))
    summary = build_cache(source, paths[lo:hi], folder, shard_size=shard_size, root=root, part=part, **kwargs)
    return folder, summary


class _RecordedSource:
    """The identity of the source that built the parts, as their ``meta.json`` records it."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.name, self.version = meta["source"], meta["source_version"]
        self._params, self._key = meta["source_params"], meta["cache_key"]

    def params(self) -> dict[str, Any]:
        return self._params

    def cache_key(self) -> str:
        return self._key


def _expand(parts: Sequence[str]) -> list[str]:
    """Part folders; a folder holding ``part-*-of-*`` folders (and no cache) stands for them."""
    found: list[str] = []
    for p in parts:
        subs = sorted(n for n in os.listdir(p) if n.startswith("part-") and "-of-" in n) if os.path.isdir(p) else []
        if subs and not os.path.isfile(os.path.join(p, "meta.json")):
            found.extend(os.path.join(p, n) for n in subs)
        else:
            found.append(p)
    return found


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    build = meta.get("build", {})
    return {k: (meta["cache_key"] if k == "cache_key" else build.get(k)) for k in _SHARED}


def _open_parts(paths: list[str]) -> list[tuple[str, ProposalCache, dict[str, Any]]]:
    """Verified parts of one build, ordered by index; errors name the odd, missing or repeated one."""
    opened = []
    for path in paths:
        cache = ProposalCache(path)  # checks every file's checksum, names a corrupt one
        part = cache.meta.get("part")
        if not isinstance(part, dict):
            raise ProposalCacheError(f"{path} is a whole proposal cache, not a part of a sharded build "
                                     "(built without --num-shards)")
        opened.append((path, cache, part))
    first_path, first, first_part = opened[0]
    by_index: dict[int, str] = {}
    for path, cache, part in opened:
        same = {"count": part["count"] == first_part["count"],
                "images": part["images_sha256"] == first_part["images_sha256"],
                "settings": _settings(cache.meta) == _settings(first.meta)}
        odd = [k for k, ok in same.items() if not ok]
        if odd:
            raise ProposalCacheError(f"part {path} belongs to another build than {first_path} "
                                     f"(different {', '.join(odd)})")
        if part["index"] in by_index:
            raise ProposalCacheError(f"part {part['index']} of {part['count']} is given twice: "
                                     f"{by_index[part['index']]} and {path}")
        by_index[part["index"]] = path
    count = first_part["count"]
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        names = ", ".join(part_folder_name(i, count) for i in missing)
        raise ProposalCacheError(f"{len(missing)} of the {count} parts are missing: {names} "
                                 f"(build them with --num-shards {count} --shard-index I)")
    return sorted(opened, key=lambda o: o[2]["index"])


def _copy(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out))


def merge_parts(parts: Sequence[str], out: str) -> CacheSummary:
    """Merge the parts of a sharded build (folders, or a folder of ``part-*`` folders) into one
    cache at ``out``, equal file for file to a serial build of the whole image list.

    Raises:
        ProposalCacheError: a part is unfinished or corrupt (the file is named), not a part, of
            another build, given twice, or missing (named); or ``out`` holds another cache.
    """
    paths = _expand(parts)
    if not paths:
        raise UserError("objssl proposals merge: no part folders given")
    if os.path.realpath(out) in {os.path.realpath(p) for p in paths}:
        raise UserError(f"--out {out} is one of the parts: merge into a new folder")
    opened = _open_parts(paths)
    meta = opened[0][1].meta
    whole = opened[0][2]
    keys = [k for _, cache, _ in opened for k in cache.images]
    if len(keys) != whole["num_images"] or keys_sha256(keys) != whole["images_sha256"]:
        raise ProposalCacheError(f"the {len(opened)} parts hold {len(keys)} images, not the "
                                 f"{whole['num_images']} images they were built as parts of (rebuild them)")
    build_id = {**meta["build"], "images_sha256": whole["images_sha256"]}
    os.makedirs(out, exist_ok=True)
    build_file = os.path.join(out, "build.json")
    earlier = read_checked_json(build_file, required=False) if os.path.isfile(build_file) else {}
    earlier.pop("checksum", None)
    if os.listdir(out) and earlier != build_id:
        raise ProposalCacheError(f"--out {out} is not empty and holds no earlier merge of these parts: "
                                 "use a new folder")
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        os.unlink(meta_path)  # unfinished until the merge completes
    shard_size = meta["build"]["shard_size"]
    for path, cache, part in opened:
        for j, _ in enumerate(cache.meta["shards"]):
            s = part["first_shard"] + j
            for ext in (".npy", ".json"):
                _copy(os.path.join(path, shard_name(j) + ext), os.path.join(out, shard_name(s) + ext))
    atomic_write(os.path.join(out, "images.txt"), lambda f: f.write("\n".join(keys) + "\n"), mode="w")
    write_checked_json(build_file, build_id)
    n = len(keys)
    ranges = [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]
    summary = CacheSummary(images=n, shards_reused=len(ranges))
    _finalize(out, _RecordedSource(meta), keys, meta["root"], ranges, summary, build_id,
              imports=meta.get("imports", []))
    return summary
