"""The proposal cache: boxes of every image of a data set in compact, checksummed, resumable shards.

Layout of a cache folder::

    meta.json             source name/version/params/cache key, data root, counts, shard checksums
    images.txt            one image path per line (relative to the data root), line i = image i
    index.npy             int64 [N, 4]: shard, offset, count, flags of image i
    sizes.npy             int32 [N, 2]: height, width of image i (0, 0 if it could not be read)
    shard-00000.npy       int16 [M, 4]: x1, y1, x2, y2 (pixels, rounded) of the images in shard 0
    shard-00000.json      the shard's image range, per-image counts/flags/sizes and sha256

At 100 boxes an image takes 800 bytes of shard plus 40 bytes of index. A shard is written (temp file
+ rename, data before manifest) only when complete, so a killed build loses at most the shards in
flight and a restart skips every shard whose manifest and checksum are intact. ``meta.json`` and
the index are written last; a folder without them is an unfinished build.

Reading is O(1) per image: the index and the shards are memory-mapped (``np.load(mmap_mode="r")``).

Images for which the source finds no box get a fallback (``fallback="random"``: random boxes from
the ``random`` source, as SoCo's post-processing and UniVIP do, flagged ``FLAG_FALLBACK`` and counted;
``"none"``: stored empty, and the view sampler's own fallback applies). Images that cannot be read are
stored empty with ``FLAG_UNREADABLE`` and counted; they never stop the build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from objssl.errors import DataError
from objssl.fileio import atomic_write
from objssl.proposals.base import MissingProposalsError, ProposalSource

log = logging.getLogger(__name__)

__all__ = [
    "ProposalCache", "ProposalCacheError", "CacheSummary", "build_cache",
    "FLAG_FALLBACK", "FLAG_UNREADABLE", "FLAG_EMPTY", "FORMAT",
]

FORMAT = "objssl-proposals"
FORMAT_VERSION = 1
FLAG_FALLBACK = 1  # the source found nothing; the boxes are the random fallback
FLAG_UNREADABLE = 2  # the image could not be decoded; no boxes
FLAG_EMPTY = 4  # the source found nothing and fallback="none": no boxes
FALLBACK_BOXES = 16  # random boxes given to an image without proposals
_INT16_MAX = np.iinfo(np.int16).max


class ProposalCacheError(DataError):
    """A proposal cache that is unfinished, corrupt, or built for other images or another source."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: str, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True)), mode="w")


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


# --------------------------------------------------------------------------------------- reading
class ProposalCache:
    """Read-only view of a finished cache folder; ``boxes(i)`` / ``boxes_for(path)`` in O(1).

    Args:
        path: the cache folder.
        verify: check every shard's sha256 on opening (reads the whole cache once; ~100 MB for
            COCO train at 100 boxes). A mismatch raises :class:`ProposalCacheError` naming the shard.
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
        with open(meta_path, encoding="utf-8") as f:
            self.meta: dict[str, Any] = json.load(f)
        if self.meta.get("format") != FORMAT:
            raise ProposalCacheError(f"{meta_path} is not an objssl proposal cache")
        if self.meta.get("format_version", 0) > FORMAT_VERSION:
            raise ProposalCacheError(
                f"{meta_path} has format version {self.meta['format_version']}; this objssl reads "
                f"up to {FORMAT_VERSION} (upgrade objssl)"
            )
        self.root: str = self.meta["root"]
        with open(os.path.join(self.path, "images.txt"), encoding="utf-8") as f:
            self.images = f.read().splitlines()
        self.index = np.load(os.path.join(self.path, "index.npy"), mmap_mode="r")
        self.sizes = np.load(os.path.join(self.path, "sizes.npy"), mmap_mode="r")
        if len(self.images) != len(self.index) or len(self.index) != self.meta["num_images"]:
            raise ProposalCacheError(
                f"proposal cache {self.path}: images.txt, index.npy and meta.json disagree on the "
                "number of images (rebuild it)"
            )
        if verify:
            self.verify()
        self._shards: dict[int, np.ndarray] = {}
        self._key_to_index: dict[str, int] | None = None
        self._name_to_index: dict[str, int | None] | None = None

    # -- integrity
    def verify(self) -> None:
        """Raise :class:`ProposalCacheError` naming the first missing or corrupt shard."""
        for shard in self.meta["shards"]:
            p = os.path.join(self.path, shard["file"])
            if not os.path.isfile(p):
                raise ProposalCacheError(f"proposal cache shard {p} is missing")
            if _sha256(p) != shard["sha256"]:
                raise ProposalCacheError(
                    f"proposal cache shard {p} is corrupt (sha256 mismatch); run `objssl proposals` "
                    "again with the same arguments: it recomputes that shard"
                )

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

    # -- lookup
    def _shard(self, i: int) -> np.ndarray:
        arr = self._shards.get(i)
        if arr is None:
            arr = np.load(os.path.join(self.path, f"{_shard_name(i)}.npy"), mmap_mode="r")
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
        self._name_to_index = {}
        for i, k in enumerate(self.images):
            name = os.path.basename(k)
            self._name_to_index[name] = i if name not in self._name_to_index else None

    def index_of(self, path: str) -> int:
        """Image number of ``path``: by its path relative to the cache's data root, else by a
        unique file name (so a data set that moved still matches)."""
        if self._key_to_index is None:
            self._build_lookup()
        assert self._key_to_index is not None and self._name_to_index is not None
        key = _relative_key(path, self.root)
        i = self._key_to_index.get(key)
        if i is None:
            i = self._name_to_index.get(os.path.basename(path))
        if i is None:
            raise MissingProposalsError(
                f"proposal cache {self.path} has no entry for image {path} (built for "
                f"{self.meta['num_images']} images under {self.root})"
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
        self.index = np.load(os.path.join(self.path, "index.npy"), mmap_mode="r")
        self.sizes = np.load(os.path.join(self.path, "sizes.npy"), mmap_mode="r")


def _relative_key(path: str, root: str) -> str:
    real = os.path.realpath(path)
    try:
        rel = os.path.relpath(real, root)
    except ValueError:  # another drive (Windows)
        return real.replace(os.sep, "/")
    return real.replace(os.sep, "/") if rel.startswith("..") else rel.replace(os.sep, "/")


def _data_root(paths: Sequence[str]) -> str:
    reals = [os.path.dirname(os.path.realpath(p)) for p in paths]
    return os.path.commonpath(reals) if reals else os.getcwd()


# --------------------------------------------------------------------------------------- writing
@dataclass
class CacheSummary:
    """What a build did (all images, including shards finished by an earlier run)."""

    images: int = 0
    computed: int = 0  # images processed by this run
    seconds: float = 0.0
    boxes: int = 0
    zero_box_images: int = 0  # the source found nothing (the fallback, if any, was applied)
    unreadable_images: int = 0
    shards_reused: int = 0
    bytes_on_disk: int = 0
    unreadable_examples: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")

    @property
    def boxes_per_image(self) -> float:
        return self.boxes / self.images if self.images else 0.0

    @property
    def bytes_per_image(self) -> float:
        return self.bytes_on_disk / self.images if self.images else 0.0

    def __str__(self) -> str:
        return (
            f"{self.images} images ({self.computed} computed, {self.shards_reused} shards reused) "
            f"in {self.seconds:.1f} s, {self.images_per_second:.2f} images/s; "
            f"{self.boxes_per_image:.1f} boxes/image; {self.zero_box_images} images with zero boxes; "
            f"{self.unreadable_images} unreadable; {self.bytes_per_image:.0f} bytes/image on disk"
        )


# One source per worker process, built once by the pool initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(name: str, params: dict[str, Any], max_side: int | None, fallback: str) -> None:
    from objssl.proposals import create_source

    torch.set_num_threads(1)
    try:  # one OpenCV thread per worker process: the pool is the parallelism
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER.update(source=create_source(name, **params), max_side=max_side, fallback=fallback)


def _propose_one(path: str) -> tuple[np.ndarray, int, int, int, str | None]:
    """``(int16 boxes [K, 4], flags, height, width, error)`` for one image, in a worker."""
    from PIL import Image

    from objssl.data.io import BadImageError, load_rgb
    from objssl.proposals.builtin import RandomSource

    source: ProposalSource = _WORKER["source"]
    try:
        image = load_rgb(path)
    except BadImageError as exc:
        return np.zeros((0, 4), np.int16), FLAG_UNREADABLE, 0, 0, str(exc)
    w, h = image.size
    sx = sy = 1.0
    max_side = _WORKER["max_side"]
    if max_side and max(w, h) > max_side:
        # sources see a smaller image (faster, as SoCo/ORL run SS at reduced size); boxes scale back
        factor = max_side / max(w, h)
        small = (max(1, round(w * factor)), max(1, round(h * factor)))
        image = image.resize(small, Image.BILINEAR)
        sx, sy = w / small[0], h / small[1]
    array = np.asarray(image)
    boxes = source(array, path=path).boxes if source.needs_path else source(array).boxes
    flags = 0
    if len(boxes) == 0:
        if _WORKER["fallback"] == "random":
            boxes = RandomSource(n=FALLBACK_BOXES)(array).boxes
            flags |= FLAG_FALLBACK
        else:
            flags |= FLAG_EMPTY
    boxes = boxes * torch.tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes.round().numpy().astype(np.int16), flags, h, w, None


def build_cache(
    source: ProposalSource,
    paths: Sequence[str],
    out: str,
    *,
    workers: int = 1,
    max_side: int | None = None,
    shard_size: int = 1000,
    fallback: str = "random",
    progress: bool = True,
    root: str | None = None,
) -> CacheSummary:
    """Run ``source`` over ``paths`` and write a cache folder at ``out`` (see the module docstring).

    Args:
        source: a registered proposal source (workers rebuild it by name and parameters).
        paths: image files, in data-set order.
        workers: processes (0 or 1: this process).
        max_side: resize images so the longer side is at most this before proposing (boxes are
            scaled back to the original pixels). None: the source sees the full image.
        shard_size: images per shard (the unit of resumption).
        fallback: ``"random"`` or ``"none"`` for images where the source finds no box.
        root: folder image paths are stored relative to (default: their common folder).

    Returns:
        :class:`CacheSummary`; it is also written into ``meta.json``.

    A folder holding shards of a build with another source, parameters or image list is refused.
    """
    from objssl.registry import PROPOSALS

    if fallback not in ("random", "none"):
        raise ValueError(f"build_cache: fallback must be 'random' or 'none', got {fallback!r}")
    if shard_size < 1:
        raise ValueError(f"build_cache: shard_size must be >= 1, got {shard_size}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"build_cache: max_side must be >= 16 pixels, got {max_side}")
    if not paths:
        raise DataError("build_cache: no images to process")
    if workers > 1 and source.name not in PROPOSALS:
        raise ValueError(
            f"build_cache: source {source.name!r} is not registered, so worker processes cannot "
            "rebuild it; register it or use workers=1"
        )
    root = os.path.realpath(root) if root else _data_root(paths)
    keys = [_relative_key(p, root) for p in paths]
    os.makedirs(out, exist_ok=True)
    # Everything that changes the boxes; a folder built with other settings is not reused.
    build_id = {
        "cache_key": source.cache_key(), "max_side": max_side, "fallback": fallback,
        "shard_size": shard_size, "images_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
    }
    id_path = os.path.join(out, "build.json")
    if os.path.isfile(id_path):
        with open(id_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != build_id:
            changed = sorted(k for k in build_id if previous.get(k) != build_id[k])
            raise ProposalCacheError(
                f"{out} holds a proposal cache built with different {', '.join(changed)}; "
                "use another --out folder or delete this one"
            )
    else:
        _write_json(id_path, build_id)
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        os.unlink(meta_path)  # the cache is unfinished again until this build completes

    n_shards = (len(paths) + shard_size - 1) // shard_size
    summary = CacheSummary(images=len(paths))
    todo: list[int] = []
    for s in range(n_shards):
        if _shard_is_complete(out, s):
            summary.shards_reused += 1
        else:
            todo.append(s)
    if summary.shards_reused:
        log.info("%s: %d of %d shards already done, skipped", out, summary.shards_reused, n_shards)

    start = time.perf_counter()
    todo_paths = [(s, i) for s in todo for i in range(s * shard_size, min((s + 1) * shard_size, len(paths)))]
    results = _run(source, [paths[i] for _, i in todo_paths], workers, max_side, fallback, progress)
    pending: dict[int, dict[int, tuple]] = {s: {} for s in todo}
    for (s, i), result in zip(todo_paths, results):
        pending[s][i] = result
        summary.computed += 1
        lo, hi = s * shard_size, min((s + 1) * shard_size, len(paths))
        if len(pending[s]) == hi - lo:
            done = pending.pop(s)
            _write_shard(out, s, lo, [done[j] for j in range(lo, hi)], paths[lo:hi])
    summary.seconds = time.perf_counter() - start
    _finalize(out, source, keys, root, n_shards, summary, build_id)
    return summary


def _run(
    source: ProposalSource,
    paths: list[str],
    workers: int,
    max_side: int | None,
    fallback: str,
    progress: bool,
) -> Iterator[tuple]:
    from tqdm import tqdm

    init_args = (source.name, source.params(), max_side, fallback)
    bar = tqdm(total=len(paths), unit="img", desc=f"proposals ({source.name})", disable=not progress)
    try:
        if workers <= 1:
            _WORKER.update(source=source, max_side=max_side, fallback=fallback)
            for p in paths:
                yield _propose_one(p)
                bar.update()
            return
        ctx = mp.get_context("spawn")  # no forked torch/OpenCV thread state in the workers
        with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
            for r in pool.imap(_propose_one, paths, chunksize=4):
                yield r
                bar.update()
    finally:
        bar.close()


def _shard_is_complete(out: str, s: int) -> bool:
    manifest = os.path.join(out, f"{_shard_name(s)}.json")
    data = os.path.join(out, f"{_shard_name(s)}.npy")
    if not (os.path.isfile(manifest) and os.path.isfile(data)):
        return False
    with open(manifest, encoding="utf-8") as f:
        info = json.load(f)
    if _sha256(data) != info.get("sha256"):
        log.warning("%s is corrupt (sha256 mismatch); recomputing it", data)
        return False
    return True


def _write_shard(out: str, s: int, first: int, results: list[tuple], paths: list[str]) -> None:
    boxes = [r[0] for r in results]
    for (b, *_), p in zip(results, paths):
        if len(b) and int(np.abs(b).max()) >= _INT16_MAX:
            raise ProposalCacheError(f"{p}: box coordinates exceed int16 (image wider/taller than {_INT16_MAX} px)")
    data = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int16)
    data_path = os.path.join(out, f"{_shard_name(s)}.npy")
    atomic_write(data_path, lambda f: np.save(f, data.astype(np.int16)))
    errors = {p: r[4] for r, p in zip(results, paths) if r[4]}
    for p, err in errors.items():
        log.warning("unreadable image, stored without boxes: %s", err)
    _write_json(os.path.join(out, f"{_shard_name(s)}.json"), {
        "first": first,
        "counts": [len(r[0]) for r in results],
        "flags": [r[1] for r in results],
        "sizes": [[r[2], r[3]] for r in results],
        "errors": errors,
        "sha256": _sha256(data_path),
    })


def _finalize(
    out: str,
    source: ProposalSource,
    keys: list[str],
    root: str,
    n_shards: int,
    summary: CacheSummary,
    build_id: dict[str, Any],
) -> None:
    index = np.zeros((len(keys), 4), np.int64)
    sizes = np.zeros((len(keys), 2), np.int32)
    shards = []
    for s in range(n_shards):
        with open(os.path.join(out, f"{_shard_name(s)}.json"), encoding="utf-8") as f:
            info = json.load(f)
        counts = np.asarray(info["counts"], np.int64)
        first = info["first"]
        rows = slice(first, first + len(counts))
        index[rows, 0] = s
        index[rows, 1] = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else []
        index[rows, 2] = counts
        index[rows, 3] = info["flags"]
        sizes[rows] = np.asarray(info["sizes"], np.int32).reshape(-1, 2)
        summary.unreadable_examples.extend(list(info["errors"])[: max(0, 5 - len(summary.unreadable_examples))])
        shards.append({"file": f"{_shard_name(s)}.npy", "sha256": info["sha256"], "images": len(counts)})
    summary.boxes = int(index[:, 2].sum())
    summary.zero_box_images = int(((index[:, 3] & (FLAG_FALLBACK | FLAG_EMPTY)) > 0).sum())
    summary.unreadable_images = int(((index[:, 3] & FLAG_UNREADABLE) > 0).sum())
    atomic_write(os.path.join(out, "index.npy"), lambda f: np.save(f, index))
    atomic_write(os.path.join(out, "sizes.npy"), lambda f: np.save(f, sizes))
    atomic_write(os.path.join(out, "images.txt"), lambda f: f.write("\n".join(keys) + "\n"), mode="w")
    summary.bytes_on_disk = sum(
        os.path.getsize(os.path.join(out, n)) for n in os.listdir(out) if n.endswith(".npy")
    )
    _write_json(os.path.join(out, "meta.json"), {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source": source.name, "source_version": source.version, "source_params": source.params(),
        "cache_key": source.cache_key(), "build": build_id, "root": root,
        "num_images": len(keys), "shards": shards,
        "summary": {
            "boxes_per_image": summary.boxes_per_image, "zero_box_images": summary.zero_box_images,
            "unreadable_images": summary.unreadable_images, "bytes_per_image": summary.bytes_per_image,
        },
    })
