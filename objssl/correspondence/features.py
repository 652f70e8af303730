"""Stage 2a: one L2-normalised feature vector per image (ORL: online backbone → online projector).

Input as ORL's feature-extract config: Resize 256 (shorter side) → CenterCrop 224 → ImageNet
normalisation (``ORL:configs/selfsup/orl/coco/stage1/r50_bs512_ep800_extract_feature.py``). The
encoder is passed in (``images [B, 3, 224, 224] -> [B, D]``), so this file needs no method.
Images that cannot be decoded are skipped and counted; they take no part in the kNN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from objssl.correspondence.format import StageTwoError, check_files, read_manifest, save_npy
from objssl.correspondence.prefetch import prefetch
from objssl.fileio import atomic_write, sha256_file, write_checked_json
from objssl.images.decode import BadImageError, load_rgb

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "retrieval_transform", "extract_features", "write_features",
           "read_features"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def retrieval_transform(resize: int = 256, crop: int = 224) -> v2.Compose:
    """PIL image → normalised ``float [3, crop, crop]``: Resize(resize) → CenterCrop(crop)."""
    return v2.Compose([
        v2.ToImage(), v2.Resize(resize, antialias=True), v2.CenterCrop(crop),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


@torch.no_grad()
def extract_features(
    encode: Callable[[torch.Tensor], torch.Tensor], paths: Sequence[str], *, batch_size: int = 64,
    device: str | torch.device = "cpu", resize: int = 256, crop: int = 224, decode_workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features float32 [N, D] L2-normalised (zeros for skipped images), readable bool [N])``;
    ``decode_workers`` threads decode and transform images ahead."""
    transform = retrieval_transform(resize, crop)
    ok = np.zeros(len(paths), dtype=bool)
    batch: list[torch.Tensor] = []
    where: list[int] = []
    rows: dict[int, torch.Tensor] = {}

    def flush() -> None:
        if batch:
            out = F.normalize(encode(torch.stack(batch).to(device)).float(), dim=1).cpu()
            for i, row in zip(where, out):
                rows[i] = row
            batch.clear()
            where.clear()

    def load(path: str) -> torch.Tensor | None:
        try:
            return transform(load_rgb(path))
        except BadImageError as exc:
            log.warning("stage 2a: skipped %s", exc)
            return None

    for i, x in enumerate(prefetch(load, paths, decode_workers)):
        if x is None:
            continue
        batch.append(x)
        ok[i] = True
        where.append(i)
        if len(batch) == batch_size:
            flush()
    flush()
    if not rows:
        raise StageTwoError("stage 2a: no image could be decoded")
    dim = next(iter(rows.values())).numel()
    out = torch.zeros(len(paths), dim)
    for i, row in rows.items():
        out[i] = row
    return out.numpy(), ok


def write_features(folder: str, paths: Sequence[str], features: np.ndarray, readable: np.ndarray,
                   **info: Any) -> None:
    """``folder/features.npy`` (float16 ``[N, D]``), ``readable.npy``, ``images.txt``, ``meta.json``."""
    text = "".join(f"{p}\n" for p in paths)
    atomic_write(os.path.join(folder, "images.txt"), lambda f: f.write(text), mode="w")
    sha = {
        "images.txt": sha256_file(os.path.join(folder, "images.txt")),
        "features.npy": save_npy(os.path.join(folder, "features.npy"), features.astype(np.float16)),
        "readable.npy": save_npy(os.path.join(folder, "readable.npy"), readable.astype(bool)),
    }
    write_checked_json(os.path.join(folder, "meta.json"), {
        "format": "objssl-features", "num_images": len(paths), "dim": int(features.shape[1]),
        "skipped": int((~readable).sum()), "files": sha, **info,
    })


def read_features(folder: str) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """``(paths, features float16 [N, D] memory-mapped, readable bool [N], meta)``; StageTwoError
    naming a missing or corrupt file."""
    meta = read_manifest(os.path.join(folder, "meta.json"))
    check_files(folder, meta["files"])
    with open(os.path.join(folder, "images.txt"), encoding="utf-8") as f:
        paths = f.read().splitlines()
    feats = np.load(os.path.join(folder, "features.npy"), mmap_mode="r")
    readable = np.load(os.path.join(folder, "readable.npy"))
    return paths, feats, readable, meta
