"""ORL's three stages as one resumable pipeline (Xie et al., NeurIPS 2021).

``OUT/stage1/`` a BYOL run; ``OUT/stage2/`` features, kNN, proposals, correspondence
(:mod:`objssl.pipelines.orl_stage2`); ``OUT/stage3/`` an ``orl`` run reading ``OUT/stage2``.
A finished training stage leaves ``OUT/stageN/stage_done.json`` (its final checkpoint and sha256);
stage 2 is finished once ``OUT/stage2/correspondence/meta.json`` is written. With ``resume`` a
rerun continues at the first unfinished piece: a training stage from its newest good checkpoint
(the trainer's exact resume), stage 2 shard by shard.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from objssl import checkpoint as ckpt_io
from objssl.config import config_to_yaml
from objssl.distributed import init_distributed
from objssl.engine.build import resolve_data
from objssl.errors import ConfigError, UserError
from objssl.fileio import atomic_write, checked_json_ok, sha256_file, write_checked_json
from objssl.pipelines.orl_stage2 import check_build, run_stage2, stage2_finished

__all__ = ["run_orl", "stage_folders", "STAGE_DONE"]

log = logging.getLogger("objssl.orl")

STAGE_DONE = "stage_done.json"
_MARKER = "orl_pipeline.json"


def stage_folders(out: str) -> dict[int, str]:
    return {n: os.path.join(out, f"stage{n}") for n in (1, 2, 3)}


def _read_done(folder: str) -> dict[str, Any] | None:
    """The finished stage's record, if present, valid and its checkpoint unchanged."""
    path = os.path.join(folder, STAGE_DONE)
    try:
        with open(path, encoding="utf-8") as f:
            done = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if not checked_json_ok(done) or not os.path.isfile(done.get("checkpoint", "")):
        return None
    if sha256_file(done["checkpoint"]) != done.get("sha256"):
        log.warning("%s: its checkpoint %s changed; the stage is redone from its newest good checkpoint",
                    path, done["checkpoint"])
        return None
    return done


def _train(cfg: dict[str, Any], folder: str, resume: bool) -> dict[str, Any] | None:
    """Run (or continue) one training stage; its done record, or None if it was stopped."""
    from objssl.engine.trainer import Trainer

    cfg["train"]["out"] = folder
    trainer = Trainer(cfg, resume=resume)
    summary = trainer.fit()
    if summary["stopped"]:
        return None
    if trainer.dist.is_main:
        path = trainer.last_checkpoint
        done = {"checkpoint": path, "sha256": sha256_file(path), "step": summary["step"], "loss": summary["loss"],
                "images_skipped": summary["images_skipped"]}
        write_checked_json(os.path.join(folder, STAGE_DONE), done)
    if trainer.dist.is_distributed:
        import torch.distributed as dist

        dist.barrier()  # the other ranks read rank 0's record (only it writes checkpoints)
    return done if trainer.dist.is_main else _read_done(folder)


def _check_backbones(cfg: dict[str, Any], checkpoint: str, stages: Sequence[int]) -> None:
    ckpt = ckpt_io.load_checkpoint(checkpoint)
    name = (ckpt.get("backbone") or {}).get("name")
    if name != cfg["stage1"]["backbone"]["name"]:
        raise ConfigError(f"stage-1 checkpoint {checkpoint} is a {name} run but stage1.backbone.name is "
                          f"{cfg['stage1']['backbone']['name']!r}")
    if 3 in stages and name != cfg["stage3"]["backbone"]["name"]:
        raise ConfigError(f"stage-1 checkpoint {checkpoint} is a {name} run but stage3.backbone.name is "
                          f"{cfg['stage3']['backbone']['name']!r}: ORL uses one backbone in every stage")


def _claim(out: str, cfg: dict[str, Any], resume: bool) -> None:
    marker = os.path.join(out, _MARKER)
    if os.path.exists(marker) and not resume:
        raise UserError(f"{out} holds an ORL pipeline run: continue it with --resume, or use another --out")
    text = json.dumps({k: config_to_yaml(v) if k != "stage2" else v for k, v in cfg.items()}, indent=1)
    atomic_write(marker, lambda f: f.write(text), mode="w")


def run_orl(cfg: dict[str, Any], out: str, *, stages: Sequence[int] = (1, 2, 3), resume: bool = False,
            on_shard: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Run the requested stages of ``cfg`` (:func:`~objssl.pipelines.orl_config.load_orl_config`) in
    ``out``. Returns ``{"stopped": bool, "stage1": .., "stage2": .., "stage3": ..}``; a stage that
    was already finished reports ``{"reused": True, ...}``."""
    stages = sorted(set(int(s) for s in stages))
    if not stages or any(s not in (1, 2, 3) for s in stages):
        raise ConfigError(f"--stages {stages}: choose among 1, 2, 3")
    if stages != list(range(stages[0], stages[-1] + 1)):
        raise ConfigError(f"--stages {','.join(map(str, stages))}: the stages must be consecutive")
    folders = stage_folders(out)
    dist_info = init_distributed("cuda" if cfg["stage2"]["device"] != "cpu" and _cuda() else "cpu")
    if dist_info.is_main:
        _claim(out, cfg, resume)
    result: dict[str, Any] = {"stopped": False}

    done1 = _read_done(folders[1])
    if 1 in stages:
        if done1 is None:
            log.info("ORL stage 1: BYOL in %s", folders[1])
            done1 = _train(cfg["stage1"], folders[1], resume)
            if done1 is None:
                return {**result, "stopped": True, "stopped_in": 1}
            result["stage1"] = done1
        else:
            log.info("ORL stage 1: finished earlier (%s)", done1["checkpoint"])
            result["stage1"] = {**done1, "reused": True}
    if done1 is None:
        raise UserError(f"stage 1 is not finished in {folders[1]}: run `objssl orl` with --stages 1 first")
    _check_backbones(cfg, done1["checkpoint"], stages)

    if stage2_finished(folders[2]):
        check_build(folders[2], cfg["stage2"], done1["sha256"])
    if 2 in stages:
        if stage2_finished(folders[2], verify=True):
            log.info("ORL stage 2: finished earlier (%s)", folders[2])
            result["stage2"] = {"reused": True}
        else:
            log.info("ORL stage 2: correspondence in %s", folders[2])
            paths = resolve_data(cfg["stage1"]["data"])
            result["stage2"] = run_stage2(folders[2], done1["checkpoint"], paths, cfg["stage2"],
                                          rank=dist_info.rank, world=dist_info.world_size, on_shard=on_shard)
    if 3 in stages:
        if not stage2_finished(folders[2]):
            raise UserError(f"stage 2 is not finished in {folders[2]}: run `objssl orl` with --stages 2 first")
        done3 = _read_done(folders[3])
        if done3 is None:
            s3 = cfg["stage3"]
            s3["data"]["correspondence"] = folders[2]
            s3["data"]["path"] = os.path.join(folders[2], "knn", "images.txt")
            log.info("ORL stage 3: %s in %s", s3["method"]["name"], folders[3])
            done3 = _train(s3, folders[3], resume)
            if done3 is None:
                return {**result, "stopped": True, "stopped_in": 3}
            result["stage3"] = done3
        else:
            result["stage3"] = {**done3, "reused": True}
    return result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
