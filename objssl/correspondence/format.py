"""The stage-2 folder format: file names, checksummed shard manifests, and their writers.

Layout of a stage-2 folder (``OUT/stage2``)::

    knn/images.txt                  one image path per line, line i = dataset index i
    knn/neighbours.npy              int32 [N, k]: dataset indices of image i's neighbours (self dropped)
    knn/scores.npy                  float32 [N, k]: their cosine similarities
    knn/meta.json                   k, N, sha256 of the three files above; self-checksummed
    correspondence/boxes-00000.npy          int16 [M, 4] xyxy (original pixels): the kept boxes of
                                            the shard's images, image after image
    correspondence/boxes-00000.offsets.npy  int64 [n + 1]: image j of the shard owns rows
                                            offsets[j]:offsets[j+1]
    correspondence/boxes-00000.json         the shard's image range, counts, sha256 of its files
                                            (and of its embeddings); self-checksummed
    correspondence/embeddings/boxes-00000.npy  float16 [M, C]: L2-normalised RoI embeddings (input
                                            of the pair step; removable once every pair shard is done)
    correspondence/pairs-00000.npy          int16 [P, 2]: (query box, neighbour box), each an index
                                            into that image's box list
    correspondence/pairs-00000.scores.npy   float32 [P]: the pairs' cosine similarities
    correspondence/pairs-00000.offsets.npy  int64 [n * k + 1]: (image j, slot s) owns rows
                                            offsets[j*k+s]:offsets[j*k+s+1]
    correspondence/pairs-00000.json         the shard's image range, sha256 of its files
    correspondence/meta.json                written last: k, N, the shard ranges, settings, counts

Shard ``s`` covers a contiguous range of dataset indices, so finding an image's shard is a binary
search over a few start indices and everything else is offset arithmetic on memory-mapped arrays.
Boxes are int16 (pixels < 32768) and pairs are int16 indices into per-image box lists (at most
32767 boxes per image), so a COCO image with 100 boxes and 10 x 10 pairs takes ~1.7 kB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from objssl.errors import DataError
from objssl.fileio import atomic_write, checked_json_ok, sha256_file, write_checked_json

__all__ = [
    "KNN_FORMAT", "CORR_FORMAT", "FORMAT_VERSION", "StageTwoError", "shard_stem", "box_files",
    "pair_files", "embedding_file", "save_npy", "write_knn", "write_box_shard", "write_pair_shard",
    "write_meta", "read_manifest", "check_files", "box_shard_valid", "pair_shard_valid",
]

KNN_FORMAT = "objssl-knn"
CORR_FORMAT = "objssl-correspondence"
FORMAT_VERSION = 1
RERUN_HINT = "rerun stage 2 with the same OUT: it recomputes that shard"


class StageTwoError(DataError):
    """A stage-2 file that is missing, unfinished or corrupt (the message names it)."""


def shard_stem(kind: str, s: int) -> str:
    """``"boxes-00003"`` / ``"pairs-00003"``."""
    return f"{kind}-{s:05d}"


def box_files(s: int) -> dict[str, str]:
    stem = shard_stem("boxes", s)
    return {"boxes": f"{stem}.npy", "offsets": f"{stem}.offsets.npy"}


def embedding_file(s: int) -> str:
    return os.path.join("embeddings", f"{shard_stem('boxes', s)}.npy")


def pair_files(s: int) -> dict[str, str]:
    stem = shard_stem("pairs", s)
    return {"pairs": f"{stem}.npy", "scores": f"{stem}.scores.npy", "offsets": f"{stem}.offsets.npy"}


def save_npy(path: str, array: np.ndarray) -> str:
    """Write ``array`` as ``.npy`` atomically; return its sha256."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: str) -> dict[str, Any]:
    """A self-checksummed JSON file; :class:`StageTwoError` naming ``path`` if missing or corrupt."""
    if not os.path.isfile(path):
        raise StageTwoError(f"{path} is missing; {RERUN_HINT}")
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageTwoError(f"{path} is corrupt (not valid JSON: {exc}); {RERUN_HINT}") from None
    if not checked_json_ok(obj):
        raise StageTwoError(f"{path} is corrupt (checksum mismatch); {RERUN_HINT}")
    return obj


def check_files(folder: str, sha: dict[str, str]) -> None:
    """Every ``{relative name: sha256}`` in ``folder`` exists and matches; else :class:`StageTwoError`."""
    for name, expected in sha.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise StageTwoError(f"{path} is missing; {RERUN_HINT}")
        if sha256_file(path) != expected:
            raise StageTwoError(f"{path} is corrupt (sha256 mismatch); {RERUN_HINT}")


def write_knn(folder: str, images: Sequence[str], neighbours: np.ndarray, scores: np.ndarray,
              **info: Any) -> None:
    """Write ``folder/knn/``: the image list, ``int32 [N, k]`` neighbours, ``float32 [N, k]`` scores."""
    neighbours = np.asarray(neighbours, dtype=np.int32)
    scores = np.asarray(scores, dtype=np.float32)
    n = len(images)
    if neighbours.shape != scores.shape or neighbours.ndim != 2 or neighbours.shape[0] != n:
        raise ValueError(f"write_knn: {n} images but neighbours {neighbours.shape}, scores {scores.shape}")
    knn = os.path.join(folder, "knn")
    text = "".join(f"{p}\n" for p in images)
    atomic_write(os.path.join(knn, "images.txt"), lambda f: f.write(text), mode="w")
    sha = {
        "images.txt": sha256_file(os.path.join(knn, "images.txt")),
        "neighbours.npy": save_npy(os.path.join(knn, "neighbours.npy"), neighbours),
        "scores.npy": save_npy(os.path.join(knn, "scores.npy"), scores),
    }
    write_checked_json(os.path.join(knn, "meta.json"), {
        "format": KNN_FORMAT, "format_version": FORMAT_VERSION, "num_images": n,
        "k": int(neighbours.shape[1]), "files": sha, **info,
    })


def write_box_shard(folder: str, s: int, start: int, boxes: Sequence[np.ndarray],
                    embeddings: np.ndarray | None, *, counts: dict[str, Any] | None = None,
                    settings: dict[str, Any] | None = None) -> None:
    """Write box shard ``s`` (images ``start .. start+len(boxes)-1``) into ``folder/correspondence``.

    ``boxes[j]``: image ``start+j``'s kept boxes, ``[M_j, 4]`` xyxy pixels; ``embeddings``:
    ``[sum M_j, C]`` (the rows in the same order), or None. The manifest is written last, so a
    shard without a valid manifest is unfinished.
    """
    corr = os.path.join(folder, "correspondence")
    counts_per_image = np.array([len(b) for b in boxes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts_per_image)]).astype(np.int64)
    flat = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]) if len(boxes) else np.zeros((0, 4))
    if flat.size and (flat.min() < -32768 or flat.max() > 32767):
        raise ValueError("write_box_shard: box coordinates do not fit int16")
    names = box_files(s)
    sha = {
        names["boxes"]: save_npy(os.path.join(corr, names["boxes"]), np.rint(flat).astype(np.int16)),
        names["offsets"]: save_npy(os.path.join(corr, names["offsets"]), offsets),
    }
    emb_sha = {}
    if embeddings is not None:
        if embeddings.shape[0] != offsets[-1]:
            raise ValueError(f"write_box_shard: {offsets[-1]} boxes but {embeddings.shape[0]} embeddings")
        name = embedding_file(s)
        emb_sha[name] = save_npy(os.path.join(corr, name), np.asarray(embeddings, dtype=np.float16))
    write_checked_json(os.path.join(corr, f"{shard_stem('boxes', s)}.json"), {
        "format": CORR_FORMAT, "kind": "boxes", "shard": s, "start": int(start),
        "end": int(start + len(boxes)), "files": sha, "embeddings": emb_sha, "counts": counts or {},
        "settings": settings or {},
    })


def write_pair_shard(folder: str, s: int, start: int, k: int,
                     pairs: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]], *,
                     counts: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
    """Write pair shard ``s``: ``pairs[j][slot] = (index pairs int [P, 2], scores float [P])`` for
    image ``start+j`` and its neighbour ``slot``; the manifest is written last."""
    corr = os.path.join(folder, "correspondence")
    idx, sc, lens = [], [], []
    for per_image in pairs:
        if len(per_image) != k:
            raise ValueError(f"write_pair_shard: {len(per_image)} neighbour slots, expected {k}")
        for p, v in per_image:
            idx.append(np.asarray(p, dtype=np.int64).reshape(-1, 2))
            sc.append(np.asarray(v, dtype=np.float32).reshape(-1))
            lens.append(len(idx[-1]))
    flat = np.concatenate(idx) if idx else np.zeros((0, 2), dtype=np.int64)
    if flat.size and flat.max() > 32767:
        raise ValueError("write_pair_shard: box indices do not fit int16")
    offsets = np.concatenate([[0], np.cumsum(np.array(lens, dtype=np.int64))]).astype(np.int64)
    names = pair_files(s)
    sha = {
        names["pairs"]: save_npy(os.path.join(corr, names["pairs"]), flat.astype(np.int16)),
        names["scores"]: save_npy(os.path.join(corr, names["scores"]),
                                  (np.concatenate(sc) if sc else np.zeros(0)).astype(np.float32)),
        names["offsets"]: save_npy(os.path.join(corr, names["offsets"]), offsets),
    }
    write_checked_json(os.path.join(corr, f"{shard_stem('pairs', s)}.json"), {
        "format": CORR_FORMAT, "kind": "pairs", "shard": s, "start": int(start),
        "end": int(start + len(pairs)), "k": int(k), "files": sha, "counts": counts or {},
        "settings": settings or {},
    })


def _shard_valid(folder: str, kind: str, s: int, start: int, end: int, *, embeddings: bool = False) -> bool:
    corr = os.path.join(folder, "correspondence")
    try:
        m = read_manifest(os.path.join(corr, f"{shard_stem(kind, s)}.json"))
        if (m.get("start"), m.get("end")) != (start, end):
            return False
        check_files(corr, m["files"])
        if embeddings:
            if not m.get("embeddings"):
                return False
            check_files(corr, m["embeddings"])
    except StageTwoError:
        return False
    return True


def box_shard_valid(folder: str, s: int, start: int, end: int, *, embeddings: bool = True) -> bool:
    """Whether box shard ``s`` exists for images ``[start, end)`` with every checksum matching."""
    return _shard_valid(folder, "boxes", s, start, end, embeddings=embeddings)


def pair_shard_valid(folder: str, s: int, start: int, end: int) -> bool:
    """Whether pair shard ``s`` exists for images ``[start, end)`` with every checksum matching."""
    return _shard_valid(folder, "pairs", s, start, end)


def write_meta(folder: str, *, k: int, num_images: int, shards: Sequence[tuple[int, int]],
               **info: Any) -> None:
    """Write ``correspondence/meta.json`` (the folder is finished once it exists)."""
    write_checked_json(os.path.join(folder, "correspondence", "meta.json"), {
        "format": CORR_FORMAT, "format_version": FORMAT_VERSION, "k": int(k),
        "num_images": int(num_images), "shards": [[int(a), int(b)] for a, b in shards], **info,
    })
