"""Reading a finished stage-2 folder: :class:`CorrespondenceStore`, memory-mapped, O(1) per image."""

from __future__ import annotations

import bisect
import os
from typing import Any

import numpy as np

from objssl.correspondence.format import (
    CORR_FORMAT,
    FORMAT_VERSION,
    KNN_FORMAT,
    StageTwoError,
    box_files,
    check_files,
    pair_files,
    read_manifest,
    shard_stem,
)

__all__ = ["CorrespondenceStore"]


class CorrespondenceStore:
    """Read-only view of ``OUT/stage2`` (its ``knn/`` and ``correspondence/`` folders).

    Use :meth:`open`. Arrays are memory-mapped on first use per shard, so opening in the main
    process and pickling into loader workers copies nothing but the small offset tables.

    Attributes:
        images: image paths in dataset order.
        k: neighbours per image.
    """

    images: list[str]
    k: int

    def __init__(self, folder: str, knn_meta: dict[str, Any], meta: dict[str, Any],
                 box_manifests: list[dict[str, Any]], pair_manifests: list[dict[str, Any]],
                 images: list[str]) -> None:
        self.folder = folder
        self.knn_meta = knn_meta
        self.meta = meta
        self.images = images
        self.k = int(meta["k"])
        self._box_manifests = box_manifests
        self._pair_manifests = pair_manifests
        self._starts = [int(a) for a, _ in meta["shards"]]
        self._index: dict[str, int] | None = None
        self._arrays: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self._neighbours: np.ndarray | None = None
        self._scores: np.ndarray | None = None

    # -- opening
    @classmethod
    def open(cls, folder: str, *, verify: bool = True) -> CorrespondenceStore:
        """Open ``folder`` (``OUT/stage2``); with ``verify`` every file's sha256 is checked.

        A missing, unfinished or corrupt file is a :class:`~objssl.errors.DataError` naming it.
        """
        folder = str(folder)
        knn, corr = os.path.join(folder, "knn"), os.path.join(folder, "correspondence")
        knn_meta = read_manifest(os.path.join(knn, "meta.json"))
        if knn_meta.get("format") != KNN_FORMAT:
            raise StageTwoError(f"{os.path.join(knn, 'meta.json')} is not an objssl kNN file")
        meta_path = os.path.join(corr, "meta.json")
        if not os.path.isfile(meta_path):
            raise StageTwoError(f"{meta_path} is missing: stage 2 is unfinished (rerun it with the same OUT)")
        meta = read_manifest(meta_path)
        if meta.get("format") != CORR_FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            raise StageTwoError(f"{meta_path} is not an objssl correspondence folder this objssl reads")
        if verify:
            check_files(knn, knn_meta["files"])
        with open(os.path.join(knn, "images.txt"), encoding="utf-8") as f:
            images = f.read().splitlines()
        n = int(meta["num_images"])
        if len(images) != n or int(knn_meta["num_images"]) != n or int(knn_meta["k"]) != int(meta["k"]):
            raise StageTwoError(f"{meta_path} and {os.path.join(knn, 'meta.json')} disagree on N or k")
        box_m, pair_m = [], []
        for s, (a, b) in enumerate(meta["shards"]):
            for kind, out in (("boxes", box_m), ("pairs", pair_m)):
                path = os.path.join(corr, f"{shard_stem(kind, s)}.json")
                m = read_manifest(path)
                if (m.get("start"), m.get("end")) != (a, b):
                    raise StageTwoError(f"{path} covers images {m.get('start')}..{m.get('end')}, meta.json says {a}..{b}")
                if verify:
                    check_files(corr, m["files"])
                out.append(m)
        return cls(folder, knn_meta, meta, box_m, pair_m, images)

    # -- lookup
    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"CorrespondenceStore({self.folder!r}, images={len(self)}, k={self.k})"

    def index_of(self, path: str) -> int:
        """Dataset index of ``path`` (as listed, or the same real path); KeyError if absent."""
        if self._index is None:
            self._index = {}
            for i, p in enumerate(self.images):
                self._index.setdefault(p, i)
                self._index.setdefault(os.path.realpath(p), i)
        for key in (path, os.path.realpath(path)):
            if key in self._index:
                return self._index[key]
        raise KeyError(f"{path} is not among the {len(self)} images of {self.folder}")

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < len(self.images):
            raise IndexError(f"image index {i} out of range for {len(self.images)} images")
        return i

    def _shard(self, kind: str, i: int) -> tuple[dict[str, np.ndarray], int]:
        s = bisect.bisect_right(self._starts, i) - 1
        key = (kind, s)
        if key not in self._arrays:
            corr = os.path.join(self.folder, "correspondence")
            names = box_files(s) if kind == "boxes" else pair_files(s)
            try:
                self._arrays[key] = {
                    k: np.load(os.path.join(corr, v), mmap_mode="r") for k, v in names.items()
                }
            except (OSError, ValueError) as exc:
                raise StageTwoError(f"{corr}/{shard_stem(kind, s)}: cannot read ({exc}); rerun stage 2") from None
        return self._arrays[key], i - self._starts[s]

    def boxes(self, i: int) -> np.ndarray:
        """int16 ``[M_i, 4]`` xyxy (original pixels): image ``i``'s kept boxes."""
        arr, j = self._shard("boxes", self._check(i))
        off = arr["offsets"]
        return np.asarray(arr["boxes"][off[j]:off[j + 1]])

    def _knn(self) -> tuple[np.ndarray, np.ndarray]:
        if self._neighbours is None:
            knn = os.path.join(self.folder, "knn")
            self._neighbours = np.load(os.path.join(knn, "neighbours.npy"), mmap_mode="r")
            self._scores = np.load(os.path.join(knn, "scores.npy"), mmap_mode="r")
        return self._neighbours, self._scores  # type: ignore[return-value]

    def neighbours(self, i: int) -> np.ndarray:
        """int32 ``[k]``: dataset indices of image ``i``'s neighbours, most similar first."""
        return np.asarray(self._knn()[0][self._check(i)])

    def neighbour_scores(self, i: int) -> np.ndarray:
        """float32 ``[k]``: the cosine similarities of :meth:`neighbours`."""
        return np.asarray(self._knn()[1][self._check(i)])

    def pair_indices(self, i: int, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """``(int16 [P, 2] box indices (query, neighbour), float32 [P] scores)``."""
        i, slot = self._check(i), int(slot)
        if not 0 <= slot < self.k:
            raise IndexError(f"neighbour slot {slot} out of range for k={self.k}")
        arr, j = self._shard("pairs", i)
        off = arr["offsets"]
        a, b = off[j * self.k + slot], off[j * self.k + slot + 1]
        return np.asarray(arr["pairs"][a:b]), np.asarray(arr["scores"][a:b])

    def pairs(self, i: int, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(query boxes int16 [P, 4], neighbour boxes int16 [P, 4], scores float32 [P])`` for
        image ``i`` and its neighbour ``slot`` (0..k-1); ``P`` may be 0."""
        idx, scores = self.pair_indices(i, slot)
        q = self.boxes(i)[idx[:, 0].astype(np.int64)]
        nb = self.boxes(int(self.neighbours(i)[slot]))[idx[:, 1].astype(np.int64)]
        return q, nb, scores

    # -- pickling (loader workers re-map lazily)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        state["_neighbours"] = state["_scores"] = None
        return state
