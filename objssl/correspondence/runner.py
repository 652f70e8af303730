"""Stages 2c and 2d over shards of images, on one process or on every rank of a ``torchrun`` group.

The images are cut into contiguous shards of ``shard_size``; rank ``r`` of ``W`` takes a contiguous
block of shards. Stage 2c writes each shard's kept boxes and their embeddings; after a barrier,
stage 2d computes each shard's pairs reading its neighbours' embeddings memory-mapped from
whichever shard holds them (nothing ragged is gathered). A shard whose files are complete and
checksum-valid is skipped on a rerun; a corrupt one is named in the log and redone. Rank 0 writes
``correspondence/meta.json`` last.

Each shard is computed alone (its own crop batches), so its files do not depend on the number of
processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from objssl.correspondence import format as fmt
from objssl.correspondence.crops import image_tensor
from objssl.correspondence.embed import embed_boxes
from objssl.correspondence.pairs import top_pairs_batched
from objssl.correspondence.prefetch import prefetch
from objssl.images.decode import BadImageError, load_rgb
from objssl.proposals.cache_format import FLAG_EMPTY, FLAG_UNREADABLE
from objssl.proposals.filters import aspect_range, filter_preset, min_size

__all__ = ["CorrespondenceSettings", "shard_ranges", "rank_shards", "EmbeddingTable", "run_boxes",
           "run_pairs", "run_correspondence"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorrespondenceSettings:
    """Everything that changes stage 2c/2d's files (ORL's values by default)."""

    box_filter: str = "orl"
    pair_ratio: float = 0.1
    crop_size: int = 224
    shard_size: int = 250
    embed_batch_size: int = 64
    pair_batch_images: int = 16
    keep_embeddings: bool = False
    decode_workers: int = 4

    def identity(self) -> dict[str, Any]:
        """The settings a finished shard must have been written with to be reused."""
        d = asdict(self)
        for k in ("embed_batch_size", "pair_batch_images", "keep_embeddings", "decode_workers"):
            d.pop(k)  # they change nothing in the files
        return d


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` ranges of at most ``shard_size`` images covering ``0..n-1``."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]


def rank_shards(num_shards: int, rank: int, world: int) -> list[int]:
    """The contiguous block of shard numbers rank ``rank`` of ``world`` computes."""
    lo, hi = num_shards * rank // world, num_shards * (rank + 1) // world
    return list(range(lo, hi))


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _leftovers(folder: str, kind: str, s: int) -> bool:
    """Whether shard ``s`` of ``kind`` left any file behind (so invalid means corrupt, not absent)."""
    corr = os.path.join(folder, "correspondence")
    return os.path.exists(os.path.join(corr, f"{fmt.shard_stem(kind, s)}.json"))


def _orl_rules_hold(box: torch.Tensor) -> bool:
    return len(aspect_range(box[min_size(box, 96, 96)], 3.0)) == 1


def _kept_boxes(raw: torch.Tensor, flags: int, image_wh: tuple[int, int], filt: Callable,
                counts: dict[str, int]) -> torch.Tensor:
    if raw.shape[0] == 0 or flags & FLAG_EMPTY:
        counts["no_proposals"] += 1
        return torch.zeros(0, 4)
    kept = filt(raw, image_wh)
    if kept.shape[0] == 1 and not _orl_rules_hold(kept):
        counts["fallback_first_box"] += 1  # no box passed the rules: ORL keeps the first raw box
    return kept


def _box_shard(folder: str, s: int, rng: tuple[int, int], images: Sequence[str], proposals: Any,
               encode: Callable, settings: CorrespondenceSettings, device: torch.device,
               autocast_dtype: torch.dtype | None) -> dict[str, int]:
    filt = filter_preset(settings.box_filter)
    counts = {"images": rng[1] - rng[0], "unreadable": 0, "no_proposals": 0, "fallback_first_box": 0}
    kept: list[np.ndarray] = []

    def decode(i: int) -> tuple[int, int, Any]:
        pi = proposals.index_of(images[i])
        flags = proposals.flags(pi)
        try:
            return pi, flags, (None if flags & FLAG_UNREADABLE else load_rgb(images[i]))
        except BadImageError as exc:
            log.warning("stage 2c: skipped %s", exc)
            return pi, flags, None

    def items():
        for pi, flags, img in prefetch(decode, range(*rng), settings.decode_workers):
            if img is None:
                counts["unreadable"] += 1
                boxes = torch.zeros(0, 4)
            else:
                boxes = _kept_boxes(proposals.boxes(pi).float(), flags, img.size, filt, counts)
            # boxes are stored as int16 pixels: embed exactly what is stored
            boxes = torch.round(boxes)
            kept.append(boxes.numpy())
            yield (image_tensor(img) if img is not None else None), boxes

    # float16 as they come (what is stored): a shard of 250 COCO images at R50 is then ~100 MB
    emb = [e.half() for e in embed_boxes(encode, items(), batch_size=settings.embed_batch_size,
                                         size=settings.crop_size, device=device, autocast_dtype=autocast_dtype)]
    dim = max((e.shape[1] for e in emb), default=0)
    flat = torch.cat([e.reshape(-1, dim) if e.numel() else torch.zeros(0, dim, dtype=torch.float16)
                      for e in emb]).numpy()
    counts["boxes"] = int(sum(len(b) for b in kept))
    fmt.write_box_shard(folder, s, rng[0], kept, flat, counts=counts, settings=settings.identity())
    return counts


def run_boxes(folder: str, images: Sequence[str], proposals: Any, encode: Callable,
              settings: CorrespondenceSettings, *, rank: int = 0, world: int = 1,
              device: str | torch.device = "cpu", autocast_dtype: torch.dtype | None = None,
              on_shard: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Stage 2c for this rank's shards; returns ``{"done": .., "reused": .., "redone": ..}``."""
    ranges = shard_ranges(len(images), settings.shard_size)
    stats = {"done": 0, "reused": 0, "redone": 0}
    for s in rank_shards(len(ranges), rank, world):
        if _box_shard_reusable(folder, s, ranges[s], settings):
            stats["reused"] += 1
            continue
        if _box_shard_reusable(folder, s, ranges[s], settings, embeddings=False):
            log.info("stage 2c: shard %d: recomputing its embeddings (removed when stage 2 finished)", s)
        elif _leftovers(folder, "boxes", s):
            log.warning("stage 2c: %s is corrupt or incomplete; recomputing it",
                        os.path.join(folder, "correspondence", fmt.shard_stem("boxes", s)))
            stats["redone"] += 1
        t0 = time.perf_counter()
        counts = _box_shard(folder, s, ranges[s], images, proposals, encode, settings, torch.device(device),
                            autocast_dtype)
        log.info("stage 2c: shard %d (%d images, %d boxes) in %.1fs", s, counts["images"], counts["boxes"],
                 time.perf_counter() - t0)
        stats["done"] += 1
        if on_shard is not None:
            on_shard("boxes", s)
    return stats


def _box_shard_reusable(folder: str, s: int, rng: tuple[int, int], settings: CorrespondenceSettings,
                        *, embeddings: bool = True) -> bool:
    if not fmt.box_shard_valid(folder, s, *rng, embeddings=embeddings):
        return False
    m = fmt.read_manifest(os.path.join(folder, "correspondence", f"{fmt.shard_stem('boxes', s)}.json"))
    return m.get("settings") == settings.identity()


class EmbeddingTable:
    """Box embeddings of any image, memory-mapped from the box shards: ``rows(i) -> [M_i, C]``."""

    def __init__(self, folder: str, ranges: Sequence[tuple[int, int]]) -> None:
        corr = os.path.join(folder, "correspondence")
        self._starts = [a for a, _ in ranges]
        self._offsets = [np.load(os.path.join(corr, fmt.box_files(s)["offsets"])) for s in range(len(ranges))]
        self._emb = [np.load(os.path.join(corr, fmt.embedding_file(s)), mmap_mode="r") for s in range(len(ranges))]

    def rows(self, i: int) -> torch.Tensor:
        s = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = i - self._starts[s]
        off = self._offsets[s]
        return torch.from_numpy(np.asarray(self._emb[s][off[j]:off[j + 1]], dtype=np.float32))


def _pair_shard(folder: str, s: int, rng: tuple[int, int], neighbours: np.ndarray, table: EmbeddingTable,
                settings: CorrespondenceSettings, device: torch.device) -> int:
    k = neighbours.shape[1]
    out: list[list[tuple[np.ndarray, np.ndarray]]] = []
    total = 0
    for a in range(rng[0], rng[1], settings.pair_batch_images):
        idx = range(a, min(a + settings.pair_batch_images, rng[1]))
        queries = [table.rows(i) for i in idx]
        nbrs = [[table.rows(int(j)) for j in neighbours[i]] for i in idx]
        for row in top_pairs_batched(queries, nbrs, settings.pair_ratio, device=device):
            out.append([(p.numpy(), v.numpy()) for p, v in row])
            total += sum(len(v) for _, v in row)
    fmt.write_pair_shard(folder, s, rng[0], k, out, counts={"pairs": total}, settings=settings.identity())
    return total


def run_pairs(folder: str, neighbours: np.ndarray, settings: CorrespondenceSettings, *, rank: int = 0,
              world: int = 1, device: str | torch.device = "cpu",
              on_shard: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Stage 2d for this rank's shards (every box shard must be finished)."""
    n = neighbours.shape[0]
    ranges = shard_ranges(n, settings.shard_size)
    stats = {"done": 0, "reused": 0, "redone": 0}
    table: EmbeddingTable | None = None
    for s in rank_shards(len(ranges), rank, world):
        if fmt.pair_shard_valid(folder, s, *ranges[s]):
            m = fmt.read_manifest(os.path.join(folder, "correspondence", f"{fmt.shard_stem('pairs', s)}.json"))
            if m.get("settings") == settings.identity():
                stats["reused"] += 1
                continue
        if _leftovers(folder, "pairs", s):
            log.warning("stage 2d: %s is corrupt or incomplete; recomputing it",
                        os.path.join(folder, "correspondence", fmt.shard_stem("pairs", s)))
            stats["redone"] += 1
        if table is None:
            table = EmbeddingTable(folder, ranges)
        t0 = time.perf_counter()
        total = _pair_shard(folder, s, ranges[s], neighbours, table, settings, torch.device(device))
        log.info("stage 2d: shard %d (%d pairs) in %.1fs", s, total, time.perf_counter() - t0)
        stats["done"] += 1
        if on_shard is not None:
            on_shard("pairs", s)
    return stats


def correspondence_finished(folder: str) -> bool:
    """Whether ``correspondence/meta.json`` exists and is valid."""
    try:
        fmt.read_manifest(os.path.join(folder, "correspondence", "meta.json"))
    except fmt.StageTwoError:
        return False
    return True


def run_correspondence(folder: str, images: Sequence[str], neighbours: np.ndarray, proposals: Any,
                       encode: Callable, settings: CorrespondenceSettings, *, rank: int = 0, world: int = 1,
                       device: str | torch.device = "cpu", autocast_dtype: torch.dtype | None = None,
                       on_shard: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Stages 2c + 2d on this rank, then (rank 0) ``meta.json``; every rank must call it.

    ``folder`` must already hold ``knn/`` for ``images`` and ``neighbours``. Returns the summary
    written into ``meta.json`` (skip counts, shards reused/redone on this rank).
    """
    meta_path = os.path.join(folder, "correspondence", "meta.json")
    if os.path.exists(meta_path) and rank == 0:
        os.unlink(meta_path)  # unfinished again until this run completes
    _barrier()
    box_stats = run_boxes(folder, images, proposals, encode, settings, rank=rank, world=world, device=device,
                          autocast_dtype=autocast_dtype, on_shard=on_shard)
    _barrier()
    pair_stats = run_pairs(folder, neighbours, settings, rank=rank, world=world, device=device,
                           on_shard=on_shard)
    _barrier()
    ranges = shard_ranges(len(images), settings.shard_size)
    summary: dict[str, Any] = {"boxes_shards": box_stats, "pairs_shards": pair_stats}
    if rank == 0:
        corr = os.path.join(folder, "correspondence")
        totals = {"images": 0, "unreadable": 0, "no_proposals": 0, "fallback_first_box": 0, "boxes": 0, "pairs": 0}
        for s in range(len(ranges)):
            c = fmt.read_manifest(os.path.join(corr, f"{fmt.shard_stem('boxes', s)}.json"))["counts"]
            for key in ("images", "unreadable", "no_proposals", "fallback_first_box", "boxes"):
                totals[key] += int(c[key])
            totals["pairs"] += int(fmt.read_manifest(
                os.path.join(corr, f"{fmt.shard_stem('pairs', s)}.json"))["counts"]["pairs"])
        summary.update(totals)
        fmt.write_meta(folder, k=neighbours.shape[1], num_images=len(images), shards=ranges,
                       settings=settings.identity(), counts=totals)
        if not settings.keep_embeddings:
            shutil.rmtree(os.path.join(corr, "embeddings"), ignore_errors=True)
        log.info("stage 2: %d images, %d boxes, %d pairs; skipped: %d unreadable, %d without proposals; "
                 "%d kept only their first raw box", totals["images"], totals["boxes"], totals["pairs"],
                 totals["unreadable"], totals["no_proposals"], totals["fallback_first_box"])
    _barrier()
    return summary
