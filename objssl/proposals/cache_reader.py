"""Reading a finished proposal cache: :class:`ProposalCache`, O(1) boxes per image, verified on opening."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from objssl.proposals.base import MissingProposalsError, ProposalSource
from objssl.proposals.cache_format import (
    FORMAT,
    FORMAT_VERSION,
    RERUN_HINT,
    ProposalCacheError,
    read_checked_json,
    relative_key,
    sha256_file,
    shard_name,
)

__all__ = ["ProposalCache"]


class ProposalCache:
    """Read-only view of a finished cache folder; ``boxes(i)`` / ``boxes_for(path)`` in O(1).

    The index and the shards are memory-mapped (``np.load(mmap_mode="r")``); looking an image up
    by path uses only ``images.txt`` (a dict built on first use), never the boxes.

    Args:
        path: the cache folder.
        verify: check the checksum of every file on opening (reads the whole cache once; ~100 MB
            for COCO train at 100 boxes). A mismatch raises :class:`ProposalCacheError` naming the
            file.
    """

    def __init__(self, path: str, *, verify: bool = True) -> None:
        self.path = str(path)
        meta_path = os.path.join(self.path, "meta.json")
        if not os.path.isdir(self.path):
            raise ProposalCacheError(f"proposal cache {self.path} does not exist")
        if not os.path.isfile(meta_path):
            raise ProposalCacheError(
                f"proposal cache {self.path} is unfinished (no meta.json): run `objssl proposals` "
                "again with the same arguments to complete it"
            )
        meta = read_checked_json(meta_path, required=False)
        if meta.get("format") != FORMAT:
            raise ProposalCacheError(f"{meta_path} is not an objssl proposal cache")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ProposalCacheError(
                f"{meta_path} has format version {meta['format_version']}; this objssl reads "
                f"up to {FORMAT_VERSION} (upgrade objssl)"
            )
        self.meta: dict[str, Any] = meta
        self.root: str = meta["root"]
        if verify:
            self.verify()
        with open(os.path.join(self.path, "images.txt"), encoding="utf-8") as f:
            self.images = f.read().splitlines()
        self._open_arrays()
        if len(self.images) != len(self.index) or len(self.index) != meta["num_images"]:
            raise ProposalCacheError(
                f"proposal cache {self.path}: images.txt, index.npy and meta.json disagree on the "
                "number of images (rebuild it)"
            )
        self._shards: dict[int, np.ndarray] = {}
        self._key_to_index: dict[str, int] | None = None
        self._name_to_index: dict[str, int | None] | None = None

    def _open_arrays(self) -> None:
        try:
            self.index = np.load(os.path.join(self.path, "index.npy"), mmap_mode="r")
            self.sizes = np.load(os.path.join(self.path, "sizes.npy"), mmap_mode="r")
        except (OSError, ValueError) as exc:  # only reachable with verify=False
            raise ProposalCacheError(f"proposal cache {self.path}: cannot read its index ({exc}); {RERUN_HINT}") from None

    # -- integrity
    def _check_file(self, name: str, expected: str | None) -> None:
        p = os.path.join(self.path, name)
        if not os.path.isfile(p):
            raise ProposalCacheError(f"proposal cache file {p} is missing; {RERUN_HINT}")
        if expected is not None and sha256_file(p) != expected:
            raise ProposalCacheError(f"proposal cache file {p} is corrupt (sha256 mismatch); {RERUN_HINT}")

    def verify(self) -> None:
        """Raise :class:`ProposalCacheError` naming the first missing or corrupt file."""
        files: dict[str, str] = self.meta.get("files", {})  # absent in format version 1
        for name in ("images.txt", "index.npy", "sizes.npy"):
            self._check_file(name, files.get(name))
        for shard in self.meta["shards"]:
            manifest = shard.get("manifest")
            if manifest is not None:
                self._check_file(manifest, shard["manifest_sha256"])
            self._check_file(shard["file"], shard["sha256"])

    # -- properties
    @property
    def source(self) -> str:
        return self.meta["source"]

    @property
    def cache_key(self) -> str:
        return self.meta["cache_key"]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"ProposalCache({self.path!r}, source={self.source!r}, images={len(self)})"

    def check_source(self, source: ProposalSource) -> None:
        """Raise if this cache was not built by ``source`` with the same version and parameters."""
        if source.cache_key() != self.cache_key:
            raise ProposalCacheError(
                f"proposal cache {self.path} was built by {self.cache_key} "
                f"({self.meta['source_params']}), not by {source.cache_key()} ({source.params()})"
            )

    def rebuild_command(self, data: str = "DATA") -> str:
        """The ``objssl proposals`` command line that built this cache, with ``--data data``
        (rerunning it on the same folder resumes it, or adds the images ``data`` has in addition)."""
        build = self.meta.get("build", {})
        parts = ["objssl proposals", f"--source {self.source}"]
        parts += [f"--import {m}" for m in self.meta.get("imports", [])]
        parts += [f"--param {k}={_yaml_value(v)}" for k, v in sorted(self.meta.get("source_params", {}).items())]
        parts += [f"--data {data}", f"--out {self.path}"]
        if build.get("max_side") is not None:
            parts.append(f"--max-side {build['max_side']}")
        if build.get("shard_size", 1000) != 1000:
            parts.append(f"--shard-size {build['shard_size']}")
        if build.get("fallback", "random") != "random":
            parts.append(f"--fallback {build['fallback']}")
        return " ".join(parts)

    # -- lookup
    def _shard(self, i: int) -> np.ndarray:
        arr = self._shards.get(i)
        if arr is None:
            arr = np.load(os.path.join(self.path, f"{shard_name(i)}.npy"), mmap_mode="r")
            self._shards[i] = arr
        return arr

    def boxes(self, i: int) -> torch.Tensor:
        """Boxes of image ``i`` (its line in ``images.txt``) as ``float32 [K, 4]`` xyxy pixels."""
        if not 0 <= i < len(self.index):
            raise IndexError(f"proposal cache {self.path} has {len(self.index)} images, asked for {i}")
        shard, offset, count, _ = (int(v) for v in self.index[i])
        rows = self._shard(shard)[offset: offset + count]
        return torch.from_numpy(np.array(rows, dtype=np.float32)).reshape(-1, 4)

    def flags(self, i: int) -> int:
        """``FLAG_FALLBACK`` / ``FLAG_UNREADABLE`` / ``FLAG_EMPTY`` bits of image ``i``."""
        return int(self.index[i, 3])

    def image_size(self, i: int) -> tuple[int, int]:
        """``(height, width)`` of image ``i`` when the cache was built."""
        h, w = self.sizes[i]
        return int(h), int(w)

    def _build_lookup(self) -> None:
        self._key_to_index = {k: i for i, k in enumerate(self.images)}
        by_name: dict[str, int | None] = {}
        for i, k in enumerate(self.images):
            name = k.rsplit("/", 1)[-1]
            by_name[name] = i if name not in by_name else None  # None: the name is ambiguous
        self._name_to_index = by_name

    def find(self, path: str) -> int | None:
        """Image number of ``path``, or None; see :meth:`index_of`."""
        if self._key_to_index is None:
            self._build_lookup()
        assert self._key_to_index is not None and self._name_to_index is not None
        # the cheap key first (no file-system calls); the real path only when it misses (links)
        absolute = os.path.abspath(path)
        rel = os.path.relpath(absolute, self.root) if absolute.startswith(self.root) else None
        i = self._key_to_index.get(rel.replace(os.sep, "/")) if rel is not None else None
        if i is None:
            i = self._key_to_index.get(relative_key(path, self.root))
        if i is None:
            i = self._name_to_index.get(os.path.basename(path))
        return i

    def index_of(self, path: str) -> int:
        """Image number of ``path``: by its path relative to the cache's data root, else by a
        unique file name (so a data set that moved still matches)."""
        i = self.find(path)
        if i is None:
            raise MissingProposalsError(
                f"proposal cache {self.path} has no entry for image {path} (built for "
                f"{self.meta['num_images']} images under {self.root}; add it with: "
                f"{self.rebuild_command()})"
            )
        return i

    def boxes_for(self, path: str) -> torch.Tensor:
        """Boxes of the image at ``path`` (``float32 [K, 4]``); see :meth:`index_of`."""
        return self.boxes(self.index_of(path))

    def __getstate__(self) -> dict[str, Any]:
        # memory maps are reopened in each DataLoader worker instead of being pickled
        state = dict(self.__dict__)
        state["_shards"] = {}
        state["index"] = state["sizes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_arrays()


def _yaml_value(value: Any) -> str:
    """``value`` as ``--param`` reads it back (YAML flow style, quoted for the shell when needed)."""
    import json

    text = json.dumps(value)  # JSON is YAML: lists, numbers, null, true/false and "strings"
    if isinstance(value, str) and value.replace("_", "").replace("-", "").isalnum():
        text = value
    return f"'{text}'" if any(c in text for c in " []{},\"") else text
