"""Building a proposal cache: run a source over a data set into shards, resumably, in worker processes.

A shard is written (temp file + rename, data before manifest) only when complete, so a killed build
loses at most the shards in flight, and a rerun with the same arguments skips every shard whose
manifest and data are intact (it checks their checksums and image keys). ``meta.json`` and the
index are written last; a folder without ``meta.json`` is an unfinished build.

A rerun on a **superset** of the images (new photos in the folder, lines added to the list file)
adds them: the images of the earlier build keep their order and their shards, the new ones are
appended and computed (with the last, partly filled shard of the earlier build). A list that lacks
images of the earlier build is refused (another ``--out`` serves it).

Images for which the source finds no box get a fallback (``fallback="random"``: random boxes from
the ``random`` source, as SoCo's post-processing and UniVIP do, flagged ``FLAG_FALLBACK`` and counted;
``"none"``: stored empty, and the view sampler's own fallback applies). Images that cannot be read are
stored empty with ``FLAG_UNREADABLE`` and counted; they never stop the build.

With ``workers > 1`` the source is pickled to spawned worker processes. A worker that dies (OOM
kill, a native crash) fails only its shard: the others are finished, and the build ends with a
:class:`ProposalCacheError` naming the failed shard (a rerun retries it).
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from objssl.errors import DataError, UserError
from objssl.fileio import atomic_write
from objssl.images.decode import BadImageError, load_rgb
from objssl.proposals.base import ProposalSource
from objssl.proposals.builtin import RandomSource
from objssl.proposals.cache_format import (
    FALLBACK_BOXES,
    FLAG_EMPTY,
    FLAG_FALLBACK,
    FLAG_UNREADABLE,
    FORMAT,
    FORMAT_VERSION,
    ProposalCacheError,
    data_root,
    keys_sha256,
    read_checked_json,
    relative_key,
    sha256_file,
    shard_name,
    write_checked_json,
)
from objssl.proposals.worker_pool import WorkerCrash, run_isolating_crashes

log = logging.getLogger(__name__)

__all__ = ["CacheSummary", "build_cache", "SourceNotImportableError"]

_INT16_MAX = np.iinfo(np.int16).max
CHUNK = 8  # images per worker task: the progress step, and the suspects when a worker dies
GIVE_UP_AFTER = 3  # consecutive shards whose worker died: the source cannot run in workers at all


class SourceNotImportableError(UserError):
    """A worker process could not rebuild the proposal source (its class or a module is not importable)."""


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
    images_added: int = 0  # images appended to an earlier build of a subset
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
        added = f", {self.images_added} added" if self.images_added else ""
        return (
            f"{self.images} images ({self.computed} computed, {self.shards_reused} shards reused{added}) "
            f"in {self.seconds:.1f} s, {self.images_per_second:.2f} images/s; "
            f"{self.boxes_per_image:.1f} boxes/image; {self.zero_box_images} images with zero boxes; "
            f"{self.unreadable_images} unreadable; {self.bytes_per_image:.0f} bytes/image on disk"
        )


# ------------------------------------------------------------------------------ per-image work
# One source per worker process, set up once by the pool initializer (or by build_cache for workers=1).
_WORKER: dict[str, Any] = {}


def _init_worker(source_bytes: bytes, source_name: str, imports: tuple[str, ...],
                 max_side: int | None, fallback: str) -> None:
    torch.set_num_threads(1)
    try:  # one OpenCV thread per worker process: the pool is the parallelism
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER.update(max_side=max_side, fallback=fallback, init_error=None)
    # errors are kept and reported by the first task: an initializer that raises would break the
    # pool with no message, and the parent could not say what is wrong
    try:
        for module in imports:
            importlib.import_module(module)
        _WORKER["source"] = pickle.loads(source_bytes)
    except BaseException as exc:  # noqa: BLE001 - anything a third-party import does
        _WORKER["init_error"] = (
            f"worker processes cannot rebuild proposal source {source_name!r} "
            f"({type(exc).__name__}: {exc}). Define it in an importable module and pass "
            "--import MODULE (build_cache(imports=[...])), or install it as a plugin (entry-point "
            "group objssl.proposals); or use --workers 1"
        )


def _propose_chunk(paths: Sequence[str]) -> list[tuple[np.ndarray, int, int, int, str | None]]:
    if _WORKER.get("init_error"):
        raise SourceNotImportableError(_WORKER["init_error"])
    return [_propose_one(p) for p in paths]


def _propose_one(path: str) -> tuple[np.ndarray, int, int, int, str | None]:
    """``(int16 boxes [K, 4], flags, height, width, error)`` for one image."""
    from PIL import Image

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
    boxes = source(array, path=path).boxes
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


# ------------------------------------------------------------------------------ the build
def _read_previous(out: str) -> tuple[dict[str, Any] | None, list[str] | None]:
    """The settings and image keys of an earlier build in ``out`` (None where absent or unreadable)."""
    id_path = os.path.join(out, "build.json")
    if not os.path.isfile(id_path):
        return None, None
    try:
        previous = read_checked_json(id_path, required=False)
    except ProposalCacheError as exc:  # every shard is still checked on its own
        log.warning("%s; starting a new build record", exc)
        return None, None
    keys_path = os.path.join(out, "images.txt")
    keys = None
    if os.path.isfile(keys_path):
        with open(keys_path, encoding="utf-8") as f:
            keys = f.read().splitlines()
        if keys_sha256(keys) != previous.get("images_sha256"):
            keys = None  # torn or from another build: shards are matched by their own keys
    return previous, keys


def _order_images(
    out: str, keys: list[str], previous: dict[str, Any] | None, old_keys: list[str] | None
) -> tuple[list[int], int]:
    """The order of the images in the cache (positions into ``keys``) and how many were added to
    an earlier build. Raises if ``keys`` lacks images of the earlier build."""
    natural = list(range(len(keys)))
    if previous is None or old_keys is None or previous.get("images_sha256") == keys_sha256(keys):
        return natural, 0
    position = {k: i for i, k in enumerate(keys)}
    lacking = [k for k in old_keys if k not in position]
    if lacking:
        raise ProposalCacheError(
            f"{out} holds a proposal cache built with different images_sha256: {len(lacking)} of its "
            f"{len(old_keys)} images are not in this list (e.g. {lacking[0]}); a rerun can only add "
            "images: use another --out folder or delete this one"
        )
    old = set(old_keys)
    order = [position[k] for k in old_keys] + [i for i, k in enumerate(keys) if k not in old]
    return order, len(keys) - len(old_keys)


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
    imports: Sequence[str] = (),
    part: dict[str, Any] | None = None,
) -> CacheSummary:
    """Run ``source`` over ``paths`` and write a cache folder at ``out`` (see the module docstring and
    :mod:`objssl.proposals.cache_format`).

    Args:
        source: a proposal source (pickled to the worker processes).
        paths: image files, in data-set order.
        workers: processes (0 or 1: this process).
        max_side: resize images so the longer side is at most this before proposing (boxes are
            scaled back to the original pixels). None: the source sees the full image.
        shard_size: images per shard (the unit of resumption).
        fallback: ``"random"`` or ``"none"`` for images where the source finds no box.
        root: folder image paths are stored relative to (default: that of an earlier build in
            ``out``, else their common folder).
        imports: modules each worker imports before unpickling the source (where it is registered).
        part: for one part of a sharded build (:mod:`objssl.proposals.parts`): what it is a part
            of, recorded in ``meta.json`` as ``"part"`` for the merge.

    Returns:
        :class:`CacheSummary`; it is also written into ``meta.json``.

    Raises:
        ProposalCacheError: ``out`` holds a build with another source, parameters or settings, or of
            images this list lacks; or a worker process died on a shard (named; the rest is done).
        SourceNotImportableError: worker processes cannot rebuild ``source``.
    """
    if fallback not in ("random", "none"):
        raise ValueError(f"build_cache: fallback must be 'random' or 'none', got {fallback!r}")
    if shard_size < 1:
        raise ValueError(f"build_cache: shard_size must be >= 1, got {shard_size}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"build_cache: max_side must be >= 16 pixels, got {max_side}")
    if not paths:
        raise DataError("build_cache: no images to process")
    source_bytes = b""
    if workers > 1:
        try:
            source_bytes = pickle.dumps(source)
        except Exception as exc:  # noqa: BLE001 - whatever the source holds
            raise SourceNotImportableError(
                f"proposal source {source.name!r} cannot be sent to worker processes (pickle: "
                f"{type(exc).__name__}: {exc}); make it picklable or use --workers 1"
            ) from None
    os.makedirs(out, exist_ok=True)
    previous, old_keys = _read_previous(out)
    if root:
        root = os.path.realpath(root)
    elif previous is not None and previous.get("root"):
        root = previous["root"]
    else:
        root = data_root(paths)
    keys = [relative_key(p, root) for p in paths]
    # Everything that changes the boxes; a folder built with other settings is not reused.
    settings = {"cache_key": source.cache_key(), "max_side": max_side, "fallback": fallback,
                "shard_size": shard_size}
    if previous is not None:
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        if changed:
            raise ProposalCacheError(
                f"{out} holds a proposal cache built with different {', '.join(changed)}; "
                "use another --out folder or delete this one"
            )
    order, added = _order_images(out, keys, previous, old_keys)
    keys = [keys[i] for i in order]
    paths = [paths[i] for i in order]
    build_id = {**settings, "images_sha256": keys_sha256(keys), "root": root}
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        os.unlink(meta_path)  # the cache is unfinished again until this build completes
    atomic_write(os.path.join(out, "images.txt"), lambda f: f.write("\n".join(keys) + "\n"), mode="w")
    write_checked_json(os.path.join(out, "build.json"), build_id)

    n_shards = (len(paths) + shard_size - 1) // shard_size
    ranges = [(s * shard_size, min((s + 1) * shard_size, len(paths))) for s in range(n_shards)]
    summary = CacheSummary(images=len(paths), images_added=added)
    todo = [s for s in range(n_shards) if not _shard_is_complete(out, s, settings, keys[slice(*ranges[s])])]
    summary.shards_reused = n_shards - len(todo)
    if summary.shards_reused:
        log.info("%s: %d of %d shards already done, skipped", out, summary.shards_reused, n_shards)

    start = time.perf_counter()
    failed, unfinished = _compute(
        source, source_bytes, paths, keys, ranges, todo, out, settings, summary, workers=workers,
        max_side=max_side, fallback=fallback, progress=progress, imports=tuple(imports),
    )
    summary.seconds = time.perf_counter() - start
    if failed:
        lo, hi = ranges[failed[0][0]]
        names = ", ".join(f"{shard_name(s)} ({how})" for s, how in failed)
        gave_up = f", {len(unfinished)} not attempted" if unfinished else ""
        raise ProposalCacheError(
            f"a worker process died computing {names} of {out} (images {lo}-{hi - 1}, first "
            f"{paths[lo]}); {n_shards - len(failed) - len(unfinished)} of {n_shards} shards are "
            f"finished{gave_up}: rerun `objssl proposals` with the same arguments to retry "
            "(--workers 1 shows the error of a source that crashes)"
        )
    _finalize(out, source, keys, root, ranges, summary, build_id, imports=list(imports), part=part)
    return summary


def _compute(
    source: ProposalSource, source_bytes: bytes, paths: list[str], keys: list[str],
    ranges: list[tuple[int, int]], todo: list[int], out: str, settings: dict[str, Any],
    summary: CacheSummary, *, workers: int, max_side: int | None, fallback: str, progress: bool,
    imports: tuple[str, ...],
) -> tuple[list[tuple[int, str]], list[int]]:
    """Compute and write the shards ``todo``. Returns the shards whose worker died (with how it
    died) and those not attempted because workers kept dying."""
    from tqdm import tqdm

    chunks = [(s, lo) for s in todo for lo in range(ranges[s][0], ranges[s][1], CHUNK)]
    pending: dict[int, dict[int, tuple]] = {s: {} for s in todo}
    failed: list[tuple[int, str]] = []
    written: set[int] = set()
    total = sum(hi - lo for lo, hi in (ranges[s] for s in todo))
    bar = tqdm(total=total, unit="img", desc=f"proposals ({source.name})", disable=not progress)

    def chunk_paths(c: int) -> list[str]:
        s, lo = chunks[c]
        return paths[lo: min(lo + CHUNK, ranges[s][1])]

    def receive(c: int, results: list[tuple]) -> None:
        s, lo = chunks[c]
        for j, r in enumerate(results):
            pending[s][lo + j] = r
        summary.computed += len(results)
        bar.update(len(results))
        first, end = ranges[s]
        if len(pending[s]) == end - first:
            done = pending.pop(s)
            _write_shard(out, s, [done[j] for j in range(first, end)], paths[first:end],
                         keys[first:end], settings)
            written.add(s)

    try:
        if workers <= 1:
            _WORKER.update(source=source, max_side=max_side, fallback=fallback, init_error=None)
            for c in range(len(chunks)):
                receive(c, _propose_chunk(chunk_paths(c)))
            return failed, []
        failed_shards: set[int] = set()
        crashes_in_a_row = 0
        tasks = [chunk_paths(c) for c in range(len(chunks))]
        outcomes = run_isolating_crashes(
            _propose_chunk, tasks, workers=workers, initializer=_init_worker,
            initargs=(source_bytes, source.name, imports, max_side, fallback),
            max_in_flight=2 * workers,  # one queued behind each running chunk keeps workers busy
            should_run=lambda c: chunks[c][0] not in failed_shards and crashes_in_a_row < GIVE_UP_AFTER,
        )
        for c, outcome in outcomes:
            s = chunks[c][0]
            if isinstance(outcome, WorkerCrash):
                log.warning("a worker process died (%s) computing %s; continuing with the other shards",
                            outcome.how, shard_name(s))
                failed_shards.add(s)
                failed.append((s, outcome.how))
                pending.pop(s, None)
                crashes_in_a_row += 1
            else:
                crashes_in_a_row = 0
                receive(c, outcome)
        unfinished = [s for s in todo if s not in written and s not in failed_shards]
        return sorted(failed), unfinished
    finally:
        bar.close()


def _shard_is_complete(out: str, s: int, settings: dict[str, Any], keys: list[str]) -> bool:
    manifest = os.path.join(out, f"{shard_name(s)}.json")
    data = os.path.join(out, f"{shard_name(s)}.npy")
    if not (os.path.isfile(manifest) and os.path.isfile(data)):
        return False
    try:
        info = read_checked_json(manifest)
    except ProposalCacheError as exc:
        log.warning("%s; recomputing that shard", exc)
        return False
    if info.get("settings") != settings or info.get("keys_sha256") != keys_sha256(keys):
        return False  # written for other images (an earlier, smaller build) or other settings
    if sha256_file(data) != info.get("sha256"):
        log.warning("%s is corrupt (sha256 mismatch); recomputing it", data)
        return False
    return True


def _write_shard(out: str, s: int, results: list[tuple], paths: list[str], keys: list[str],
                 settings: dict[str, Any]) -> None:
    boxes = [r[0] for r in results]
    for (b, *_), p in zip(results, paths):
        if len(b) and int(np.abs(b).max()) >= _INT16_MAX:
            raise ProposalCacheError(f"{p}: box coordinates exceed int16 (image wider/taller than {_INT16_MAX} px)")
    data = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int16)
    data_path = os.path.join(out, f"{shard_name(s)}.npy")
    atomic_write(data_path, lambda f: np.save(f, data.astype(np.int16)))
    errors = {p: r[4] for r, p in zip(results, paths) if r[4]}
    for p, err in errors.items():
        log.warning("unreadable image, stored without boxes: %s", err)
    write_checked_json(os.path.join(out, f"{shard_name(s)}.json"), {
        "settings": settings,
        "keys": keys,
        "keys_sha256": keys_sha256(keys),
        "counts": [len(r[0]) for r in results],
        "flags": [r[1] for r in results],
        "sizes": [[r[2], r[3]] for r in results],
        "errors": errors,
        "sha256": sha256_file(data_path),
    })


def _finalize(
    out: str,
    source: ProposalSource,
    keys: list[str],
    root: str,
    ranges: list[tuple[int, int]],
    summary: CacheSummary,
    build_id: dict[str, Any],
    imports: Sequence[str] = (),
    part: dict[str, Any] | None = None,
) -> None:
    index = np.zeros((len(keys), 4), np.int64)
    sizes = np.zeros((len(keys), 2), np.int32)
    shards = []
    for s, (first, end) in enumerate(ranges):
        manifest = os.path.join(out, f"{shard_name(s)}.json")
        info = read_checked_json(manifest)
        counts = np.asarray(info["counts"], np.int64)
        rows = slice(first, end)
        index[rows, 0] = s
        index[rows, 1] = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else []
        index[rows, 2] = counts
        index[rows, 3] = info["flags"]
        sizes[rows] = np.asarray(info["sizes"], np.int32).reshape(-1, 2)
        summary.unreadable_examples.extend(list(info["errors"])[: max(0, 5 - len(summary.unreadable_examples))])
        shards.append({"file": f"{shard_name(s)}.npy", "sha256": info["sha256"], "images": len(counts),
                       "manifest": f"{shard_name(s)}.json", "manifest_sha256": sha256_file(manifest)})
    summary.boxes = int(index[:, 2].sum())
    summary.zero_box_images = int(((index[:, 3] & (FLAG_FALLBACK | FLAG_EMPTY)) > 0).sum())
    summary.unreadable_images = int(((index[:, 3] & FLAG_UNREADABLE) > 0).sum())
    atomic_write(os.path.join(out, "index.npy"), lambda f: np.save(f, index))
    atomic_write(os.path.join(out, "sizes.npy"), lambda f: np.save(f, sizes))
    atomic_write(os.path.join(out, "images.txt"), lambda f: f.write("\n".join(keys) + "\n"), mode="w")
    summary.bytes_on_disk = sum(
        os.path.getsize(os.path.join(out, n)) for n in os.listdir(out) if n.endswith(".npy")
    )
    files = {n: sha256_file(os.path.join(out, n)) for n in ("images.txt", "index.npy", "sizes.npy")}
    extra = {"part": part} if part is not None else {}
    write_checked_json(os.path.join(out, "meta.json"), {
        **extra,
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source": source.name, "source_version": source.version, "source_params": source.params(),
        "cache_key": source.cache_key(), "build": build_id, "root": root, "imports": list(imports),
        "num_images": len(keys), "shards": shards, "files": files,
        "summary": {
            "boxes_per_image": summary.boxes_per_image, "zero_box_images": summary.zero_box_images,
            "unreadable_images": summary.unreadable_images, "bytes_per_image": summary.bytes_per_image,
        },
    })
