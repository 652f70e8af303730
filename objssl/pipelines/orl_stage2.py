"""ORL stage 2 from a stage-1 checkpoint: features → kNN → proposals → correspondence.

Folder ``OUT/stage2``::

    build.json          the stage-1 checkpoint's sha256 and the stage-2 settings it was built with
    features/           2a: float16 [N, D] projector features of every image (+ which decoded)
    knn/                2b: the decodable images, their k neighbours and cosines
    proposals/          2c: an objssl proposal cache of those images (``objssl proposals`` format)
    correspondence/     2c/2d: kept boxes, RoI embeddings, pairs, in checksummed shards

Each piece is reused when its files are complete and checksum-valid; the correspondence is
resumed per shard. 2a, 2b and the proposals run on rank 0 (the others wait); the correspondence
runs on every rank of a ``torchrun`` group.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from objssl import checkpoint as ckpt_io
from objssl.correspondence import format as fmt
from objssl.correspondence.features import extract_features, read_features, write_features
from objssl.correspondence.knn import knn_search
from objssl.correspondence.runner import CorrespondenceSettings, correspondence_finished, run_correspondence
from objssl.errors import ConfigError, UserError
from objssl.fileio import atomic_write, checked_json_ok, sha256_file, write_checked_json
from objssl.proposals.cache_format import keys_sha256

__all__ = ["projector_encoder", "run_stage2", "stage2_finished", "check_build"]

log = logging.getLogger("objssl.orl")


def projector_encoder(method: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``images -> online projector(online backbone pooled)``: ORL's kNN features (2a)."""
    online = method.online
    for group in ("byol_global", *online.keys()):
        heads = online[group] if group in online else None
        if isinstance(heads, torch.nn.ModuleDict) and "projector" in heads:
            projector = heads["projector"]
            break
    else:
        raise UserError("the stage-1 checkpoint's method has no byol_global projector (ORL's stage 1 is BYOL)")
    backbone = online["backbone"]
    return lambda x: projector(backbone.forward_pooled(x))


def stage2_finished(folder: str, *, verify: bool = False) -> bool:
    """Whether ``folder`` is a finished stage 2; with ``verify`` every file's checksum is checked
    too and a mismatch is logged, naming the file (the folder is then unfinished)."""
    if not correspondence_finished(folder):
        return False
    if verify:
        from objssl.correspondence.store import CorrespondenceStore

        try:
            CorrespondenceStore.open(folder)
        except fmt.StageTwoError as exc:
            log.warning("stage 2: %s", exc)
            return False
    return True


def _settings(s2: dict[str, Any]) -> CorrespondenceSettings:
    return CorrespondenceSettings(
        box_filter=s2["box_filter"], pair_ratio=float(s2["pair_ratio"]), crop_size=s2["crop_size"],
        shard_size=s2["shard_size"], embed_batch_size=s2["embed_batch_size"],
        pair_batch_images=s2["pair_batch_images"], keep_embeddings=bool(s2["keep_embeddings"]),
        decode_workers=s2["decode_workers"],
    )


def _device(s2: dict[str, Any]) -> tuple[torch.device, torch.dtype | None]:
    want = s2["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("stage2.device=cuda but no CUDA device is available")
    device = torch.device("cuda" if want in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and dist.is_available() and dist.is_initialized():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    amp = torch.bfloat16 if s2["precision"] == "bf16" or (s2["precision"] == "auto" and device.type == "cuda") else None
    return device, amp


def _identity(s2: dict[str, Any], checkpoint_sha: str) -> dict[str, Any]:
    ident = {k: v for k, v in s2.items() if k not in ("device", "feature_batch_size", "embed_batch_size",
                                                      "pair_batch_images", "keep_embeddings", "decode_workers")}
    ident["proposals"] = {k: v for k, v in s2["proposals"].items() if k != "workers"}
    return {"checkpoint_sha256": checkpoint_sha, "settings": ident}


def check_build(folder: str, s2: dict[str, Any], checkpoint_sha: str) -> None:
    """ConfigError when ``folder`` was built from another stage-1 checkpoint or other stage-2 settings."""
    _check_build(folder, _identity(s2, checkpoint_sha), write=False)


def _check_build(folder: str, ident: dict[str, Any], *, write: bool = True) -> None:
    path = os.path.join(folder, "build.json")
    if os.path.isfile(path):
        import json

        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if checked_json_ok(old):
            body = {k: v for k, v in old.items() if k != "checksum"}
            if body != ident:
                what = "another stage-1 checkpoint" if body.get("checkpoint_sha256") != ident["checkpoint_sha256"] \
                    else "other stage2 settings (" + ", ".join(sorted(
                        k for k in set(body["settings"]) | set(ident["settings"])
                        if body["settings"].get(k) != ident["settings"].get(k))) + ")"
                raise ConfigError(f"{folder} was built from {what}; use another --out or delete {folder}")
    if write:
        write_checked_json(path, ident)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


READY = ".inputs_ready"  # written by rank 0 once features, kNN and proposals are done


def _wait_for_inputs(folder: str, poll_s: float = 5.0) -> None:
    """The other ranks wait for rank 0's 2a/2b/proposals by polling a file, not in a collective:
    those steps can take hours (selective search), longer than a process group's timeout."""
    while not os.path.exists(os.path.join(folder, READY)):
        time.sleep(poll_s)


def run_stage2(folder: str, checkpoint: str, paths: list[str], s2: dict[str, Any], *,
               rank: int = 0, world: int = 1, on_shard: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Build (or finish) ``folder`` from the stage-1 ``checkpoint`` over ``paths``; returns counts."""
    from objssl.methods import method_from_checkpoint
    from objssl.proposals import create_source
    from objssl.proposals.cache_builder import build_cache
    from objssl.proposals.cache_reader import ProposalCache

    paths = [os.path.abspath(p) for p in paths]
    device, amp = _device(s2)
    ckpt_sha = sha256_file(checkpoint)
    if rank == 0:
        _check_build(folder, _identity(s2, ckpt_sha))
        if os.path.exists(os.path.join(folder, READY)):
            os.unlink(os.path.join(folder, READY))
    _barrier()  # no rank looks for READY before rank 0 removed an old one
    method = method_from_checkpoint(ckpt_io.load_checkpoint(checkpoint)).to(device).eval()
    summary: dict[str, Any] = {}
    feat_dir, knn_dir = os.path.join(folder, "features"), os.path.join(folder, "knn")
    if rank == 0:
        # 2a: features (reused when complete, for these images and this checkpoint)
        try:
            f_paths, feats, readable, meta = read_features(feat_dir)
            fresh = f_paths != paths or meta.get("checkpoint_sha256") != ckpt_sha
        except fmt.StageTwoError:
            fresh = True
        if fresh:
            encode = projector_encoder(method)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                feats, readable = extract_features(encode, paths, batch_size=s2["feature_batch_size"], device=device,
                                                   resize=s2["feature_resize"], crop=s2["feature_crop"],
                                                   decode_workers=s2["decode_workers"])
            write_features(feat_dir, paths, feats, readable, checkpoint_sha256=ckpt_sha)
            log.info("stage 2a: features of %d images (%d skipped: not decodable)", len(paths), int((~readable).sum()))
        else:
            log.info("stage 2a: reusing %s", feat_dir)
        summary["images_skipped"] = int((~np.asarray(readable)).sum())
        images = [p for p, ok in zip(paths, readable) if ok]
        # 2b: kNN over the decodable images
        feats_ok = np.asarray(feats, dtype=np.float32)[np.asarray(readable)]
        try:
            knn_meta = fmt.read_manifest(os.path.join(knn_dir, "meta.json"))
            fmt.check_files(knn_dir, knn_meta["files"])
            knn_fresh = knn_meta.get("features_sha256") != fmt.read_manifest(
                os.path.join(feat_dir, "meta.json"))["files"]["features.npy"] or knn_meta["k"] != s2["knn_k"]
        except fmt.StageTwoError:
            knn_fresh = True
        if knn_fresh:
            idx, sc = knn_search(feats_ok, s2["knn_k"])
            fmt.write_knn(folder, images, idx, sc, features_sha256=fmt.read_manifest(
                os.path.join(feat_dir, "meta.json"))["files"]["features.npy"], images_sha256=keys_sha256(images))
            log.info("stage 2b: %d neighbours of %d images", s2["knn_k"], len(images))
        # 2c proposals: the proposal cache resumes by itself, shard by shard
        p = s2["proposals"]
        for module in p.get("imports") or []:
            __import__(module)
        source = create_source(p["source"], **(p.get("params") or {}))
        build_cache(source, images, os.path.join(folder, "proposals"), workers=p["workers"], max_side=p["max_side"],
                    shard_size=p["shard_size"], fallback="none", progress=False, imports=p.get("imports") or ())
        atomic_write(os.path.join(folder, READY), lambda f: f.write("ready\n"), mode="w")
    else:
        _wait_for_inputs(folder)
    _barrier()
    with open(os.path.join(knn_dir, "images.txt"), encoding="utf-8") as f:
        images = f.read().splitlines()
    neighbours = np.load(os.path.join(knn_dir, "neighbours.npy"))
    proposals = ProposalCache(os.path.join(folder, "proposals"))
    backbone = method.online["backbone"]
    summary.update(run_correspondence(
        folder, images, neighbours, proposals, backbone.forward_pooled, _settings(s2), rank=rank, world=world,
        device=device, autocast_dtype=amp, on_shard=on_shard))
    return summary
