"""Frozen-backbone features of a labelled image set: extracted once, batched, and cached on disk.

Feature kinds:

* ``pooled``: the backbone's own pooled vector (``forward_head(pre_logits=True)``: global average
  pool for ResNets, the class token or mean for ViTs);
* ``feat5``: ORL's VOC07 SVM feature (``benchmarks/extract_info/voc07.py`` config with the
  ``feat5`` layer of its extractor): the res5 map → ``AvgPool2d(6, stride=1)`` → flattened
  channel-major (``2 × 2 × 2048 = 8192``-d for ResNet-50 at 224; below 192 px, where res5 is
  smaller than 6 × 6, the kernel is res5's side). Only ResNets have it
  (:func:`svm_feature_kind` falls back to ``pooled`` for other backbones).

The cache key is the weights' fingerprint, the backbone name, the feature kind, the transform's
description and the listing of the images (path, size, mtime of each): a second run with the same
four reads the file back; any change (another transform, a retouched image) extracts anew. Cache
files are written atomically. An image that does not decode is a counted skip (logged, listed in
the result), never a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from objssl.checkpoint import atomic_save, safe_torch_load
from objssl.images import BadImageError, load_rgb

__all__ = ["Features", "extract_features", "svm_feature_kind", "feature_cache_key", "FEATURE_KINDS"]

log = logging.getLogger("objssl.eval")

FEATURE_KINDS = ("pooled", "feat5")
CACHE_VERSION = 1


@dataclass
class Features:
    """Features of the images that decoded (rows follow ``kept``, indices into the image list)."""

    values: Tensor  # float32 [len(kept), D], on the CPU
    kept: np.ndarray  # int64 indices of the images the rows belong to
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of each unreadable image
    from_cache: bool = False
    cache_file: str | None = None


class _Images(Dataset):
    def __init__(self, paths: list[str], transform, image_size: int) -> None:
        self.paths, self.transform, self.image_size = paths, transform, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(load_rgb(self.paths[i])), i, ""
        except BadImageError as exc:
            return torch.zeros(3, self.image_size, self.image_size), i, exc.reason


def svm_feature_kind(backbone: nn.Module) -> str:
    """``feat5`` for a timm ResNet (it has res5 = ``layer4``), else ``pooled``."""
    from timm.models.resnet import ResNet

    return "feat5" if isinstance(getattr(backbone, "model", None), ResNet) else "pooled"


def _forward(backbone: nn.Module, x: Tensor, kind: str) -> Tensor:
    if kind == "pooled":
        return backbone.forward_pooled(x)
    last = backbone.feature_info[-1].name  # the deepest map: res5 on a ResNet
    res5 = backbone(x, maps=[last], pooled=False).maps[last]
    # ORL's kernel is 6 (res5 is 7x7 at 224); a smaller input's res5 is pooled by its own side
    kernel = min(6, res5.shape[-2], res5.shape[-1])
    return nn.functional.avg_pool2d(res5, kernel_size=kernel, stride=1).flatten(1)


def _listing_digest(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            entry = f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            entry = f"{p}\0missing\n"
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def feature_cache_key(fingerprint: str, backbone_name: str, kind: str, transform_key: str, paths: list[str]) -> str:
    record = {"version": CACHE_VERSION, "weights": fingerprint, "backbone": backbone_name, "kind": kind,
              "transform": transform_key, "images": _listing_digest(paths)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:40]


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    paths: list[str],
    transform,
    *,
    image_size: int,
    kind: str = "pooled",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    cache_dir: str | None = None,
    cache_key: str | None = None,
    progress: bool = True,
    desc: str = "features",
) -> Features:
    """Features of ``paths`` through ``transform`` and ``backbone`` (in eval mode; its mode and device
    are restored afterwards). With ``cache_dir`` and ``cache_key`` the result is read from / written to
    ``cache_dir/<cache_key>.pt``."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind {kind!r}: choose one of {FEATURE_KINDS}")
    cache_file = os.path.join(cache_dir, f"{cache_key}.pt") if cache_dir and cache_key else None
    if cache_file and os.path.isfile(cache_file):
        try:
            saved = safe_torch_load(cache_file)
            if saved.get("n_images") == len(paths):
                log.info("%s: read from the cache %s", desc, cache_file)
                return Features(saved["values"], saved["kept"].numpy(), [tuple(s) for s in saved["skipped"]],
                                True, cache_file)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is extracted anew, not fatal
            log.warning("feature cache %s unreadable (%s): extracting anew", cache_file, exc)
    dev = _device(device)
    was_training = backbone.training
    first = next(backbone.parameters(), None)
    old_device = first.device if first is not None else torch.device("cpu")
    backbone.eval().to(dev)
    loader = DataLoader(_Images(paths, transform, image_size), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=dev.type == "cuda")
    rows, kept, skipped = [], [], []
    try:
        from tqdm.auto import tqdm

        for x, index, reason in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
            good = torch.tensor([not r for r in reason], dtype=torch.bool)
            for i, r in zip(index.tolist(), reason):
                if r:
                    skipped.append((paths[i], r))
                    log.warning("skipped unreadable image %s: %s", paths[i], r)
            if good.any():
                out = _forward(backbone, x[good].to(dev, non_blocking=True), kind)
                rows.append(out.float().cpu())
                kept.extend(index[good].tolist())
    finally:
        backbone.train(was_training).to(old_device)
    values = torch.cat(rows) if rows else torch.zeros(0, 0)
    feats = Features(values, np.asarray(kept, dtype=np.int64), skipped, False, cache_file)
    if cache_file:
        atomic_save({"values": values, "kept": torch.as_tensor(feats.kept), "skipped": [list(s) for s in skipped],
                     "n_images": len(paths), "kind": kind}, cache_file)
        log.info("%s: cached in %s", desc, cache_file)
    return feats
