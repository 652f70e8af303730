"""The training loop shared by every method.

One process or ``torchrun`` DDP; bf16/fp16 autocast on GPUs; gradient accumulation; timm
optimizers and per-iteration warmup + cosine; EMA target update after each optimizer step;
atomic checkpoints with exact resume (model, target, optimizer, scheduler, grad scaler, RNG states
and the position inside the epoch); non-finite losses skipped and counted, with an abort after too
many in a row; tqdm progress, TensorBoard scalars, a plain-text log and ``metrics.jsonl``.

Output folder::

    OUT/config.yaml  OUT/log.txt  OUT/metrics.jsonl  OUT/tb/  OUT/checkpoints/step_XXXXXXXX.pth
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from objssl.backbones import create_backbone
from objssl.config import config_to_yaml, validate_config
from objssl.data.sampler import ResumableBatchSampler
from objssl.checkpoint import (
    find_latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from objssl.distributed import DistInfo, all_reduce_mean, all_reduce_min, init_distributed
from objssl.engine.optim import build_optimizer, build_scheduler, scaled_lr, warmup_steps_for
from objssl.errors import UserError
from objssl.methods import create_method
from objssl.registry import METHODS

__all__ = ["Trainer", "TrainingDivergedError", "resolve_data"]

log = logging.getLogger("objssl.train")


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite losses."""


def resolve_data(data_cfg: dict[str, Any]) -> list[str]:
    """The image paths of ``data.path`` (the demo photos when it is null). Errors are one line."""
    if data_cfg.get("path") in (None, ""):
        from objssl.data.demo import demo_images

        return demo_images()
    from objssl.data.sources import list_images

    return list_images(data_cfg["path"], image_root=data_cfg.get("image_root"))


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _to_device(obj: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            return obj.to(device, non_blocking=True, memory_format=torch.channels_last)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, channels_last) for v in obj)
    return obj


class Trainer:
    """Builds data, model, optimizer and schedule from a config, then runs :meth:`fit`.

    Args:
        cfg: a full config (see :mod:`objssl.config`).
        resume: ``True`` resumes from the newest checkpoint in ``OUT/checkpoints`` (starting fresh
            with a warning if there is none); a path resumes from that file.
    """

    def __init__(self, cfg: dict[str, Any], *, resume: bool | str = False) -> None:
        validate_config(cfg)
        self.cfg = cfg
        t = cfg["train"]
        self.device = _pick_device(t["device"])
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.out = t["out"]
        self.ckpt_dir = os.path.join(self.out, "checkpoints")

        # data first: a wrong path (or proposals not covering it) fails here, before any model is built
        self.paths = resolve_data(cfg["data"])
        method_cls = METHODS.get(cfg["method"]["name"])
        method_cls.check_data(self.paths, cfg)
        if cfg["data"].get("proposals") and "proposals" not in method_cls.uses_data:
            log.warning("data.proposals is set but method %r does not read proposals; it is ignored",
                        cfg["method"]["name"])
        if cfg["data"].get("path") in (None, "") and t["batch_size"] > len(self.paths):
            # the bundled demo photos are a handful: shrink the batch instead of refusing to run
            per_step = self.dist.world_size * t["accum_steps"]
            fitted = max(per_step, len(self.paths) // per_step * per_step)
            log.warning("demo data has %d photos: train.batch_size %d lowered to %d (and the lr scaled with it)",
                        len(self.paths), t["batch_size"], fitted)
            t["batch_size"] = fitted
        self.sampler = ResumableBatchSampler(
            len(self.paths),
            t["batch_size"],
            accum_steps=t["accum_steps"],
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            seed=t["seed"],
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = t["max_steps"] if t["max_steps"] is not None else t["epochs"] * self.steps_per_epoch

        torch.manual_seed(t["seed"])
        bcfg = cfg["backbone"]
        backbone = create_backbone(
            bcfg["name"],
            out_indices=bcfg.get("out_indices"),
            pretrained_file=bcfg.get("pretrained_file"),
            **(bcfg.get("kwargs") or {}),
        )
        method_kwargs = {k: v for k, v in cfg["method"].items() if k != "name"}
        self.method = create_method(cfg["method"]["name"], backbone, **method_kwargs)
        self.dataset = self.method.build_dataset(self.paths, cfg)
        self.collate_fn = self.method.collate_fn

        self.channels_last = bool(t["channels_last"]) and self.device.type == "cuda"
        self.method.to(self.device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if self.dist.is_distributed and self.device.type == "cuda" and t["sync_bn"]:
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.model: nn.Module = self.method
        if self.dist.is_distributed:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.model = DDP(self.method, device_ids=ids)

        self.lr = scaled_lr(cfg["optim"], t["batch_size"])
        self.optimizer = build_optimizer(self.method, cfg["optim"], self.lr)
        self.warmup_steps = warmup_steps_for(cfg["optim"], self.steps_per_epoch, self.total_steps)
        self.scheduler = build_scheduler(self.optimizer, cfg["optim"], self.lr, self.total_steps, self.warmup_steps)
        self.amp_dtype = _autocast_dtype(t["precision"], self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.step = 0
        self.images_skipped = 0
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self._stop_requested = False
        self.resumed_from: str | None = None
        if resume:
            path = resume if isinstance(resume, str) else find_latest_checkpoint(self.ckpt_dir)
            if path is None:
                log.warning("--resume: no checkpoint in %s, starting from scratch", self.ckpt_dir)
            else:
                self._load(path)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        bcfg = self.cfg["backbone"]
        return {
            "method": self.cfg["method"]["name"],
            "backbone": {"name": bcfg["name"], "kwargs": dict(bcfg.get("kwargs") or {})},
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "progress": {
                "step": self.step,
                "total_steps": self.total_steps,
                "images_skipped": self.images_skipped,
                "nonfinite_total": self.nonfinite_total,
                "nonfinite_in_row": self.nonfinite_in_row,
            },
            "config": self.cfg,
        }

    def save(self) -> str | None:
        if not self.dist.is_main:
            return None
        path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.cfg["train"]["keep_last"])
        log.info("checkpoint: %s", path)
        return path

    def _load(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("method") != self.cfg["method"]["name"] or ckpt["backbone"]["name"] != self.cfg["backbone"]["name"]:
            raise UserError(
                f"cannot resume from {path}: it is a {ckpt.get('method')}/{ckpt['backbone']['name']} "
                f"checkpoint, the config asks for {self.cfg['method']['name']}/{self.cfg['backbone']['name']}"
            )
        self.method.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        prog = ckpt["progress"]
        self.step = int(prog["step"])
        self.images_skipped = int(prog["images_skipped"])
        self.nonfinite_total = int(prog["nonfinite_total"])
        self.nonfinite_in_row = int(prog["nonfinite_in_row"])
        if int(prog["total_steps"]) != self.total_steps:
            log.warning(
                "resuming a %d-step schedule as a %d-step one (changed epochs/max_steps/batch size)",
                prog["total_steps"],
                self.total_steps,
            )
        self.resumed_from = path
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> tuple[Any, Any]:
        if not self.dist.is_main:
            return None, None
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "config.yaml"), "w") as f:
            f.write(config_to_yaml(self.cfg))
        handler = logging.FileHandler(os.path.join(self.out, "log.txt"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("objssl").addHandler(handler)
        logging.getLogger("objssl").setLevel(logging.INFO)
        self._log_handler = handler
        # keep metrics consistent with the resumed state: drop steps logged after the checkpoint
        metrics_path = os.path.join(self.out, "metrics.jsonl")
        kept: list[str] = []
        if self.step > 0 and os.path.exists(metrics_path):
            with open(metrics_path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= self.step]
        metrics = open(metrics_path, "w")
        metrics.writelines(kept)
        metrics.flush()
        writer = None
        if self.cfg["train"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(os.path.join(self.out, "tb"), purge_step=self.step + 1 if self.step else None)
        return metrics, writer

    # ------------------------------------------------------------------ training
    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start_step)
        workers = int(self.cfg["data"]["num_workers"])
        return DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _request_stop(self, signum: int, frame: Any) -> None:
        log.warning("signal %d: finishing this step, writing a checkpoint, then stopping", signum)
        self._stop_requested = True

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train until the schedule ends (or for ``stop_after_steps`` more steps, then checkpoint).

        Returns a summary dict (final step, last loss, skipped images, non-finite steps).
        """
        t = self.cfg["train"]
        accum = t["accum_steps"]
        stop_at = self.total_steps if stop_after_steps is None else min(self.total_steps, self.step + stop_after_steps)
        metrics, writer = self._open_logs()
        old_handler = None
        if self.dist.is_main and hasattr(signal, "SIGTERM"):
            with contextlib.suppress(ValueError):  # not the main thread
                old_handler = signal.signal(signal.SIGTERM, self._request_stop)
        if self.dist.is_main:
            log.info(
                "training %s on %s: %d images, %d steps (%d/epoch), global batch %d, lr %.4g, "
                "warmup %d steps, %s, precision %s, world %d",
                self.cfg["method"]["name"], self.cfg["backbone"]["name"], len(self.paths), self.total_steps,
                self.steps_per_epoch, t["batch_size"], self.lr, self.warmup_steps, self.device,
                self.amp_dtype or "fp32", self.dist.world_size,
            )
        bar = None
        if self.dist.is_main and t["progress"]:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop_at, initial=self.step, desc=self.cfg["method"]["name"], dynamic_ncols=True)
        last_loss = float("nan")
        self.method.train()
        try:
            while self.step < stop_at and not self._stop_requested:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                micro_batches: list[Any] = []
                t0 = time.perf_counter()
                for batch in self._loader(epoch, in_epoch):
                    micro_batches.append(batch)
                    if len(micro_batches) < accum:
                        continue
                    last_loss, logs = self._optimizer_step(micro_batches)
                    micro_batches = []
                    self.step += 1
                    dt = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    throughput = t["batch_size"] / max(dt, 1e-9)
                    if self.dist.is_main:
                        record = {"step": self.step, "epoch": epoch, "loss": last_loss, "lr": logs["lr"],
                                  "momentum": logs["momentum"], "img_per_s": throughput,
                                  "images_skipped": self.images_skipped, "nonfinite_total": self.nonfinite_total}
                        record.update({k: v for k, v in logs.items() if k not in record})
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                        if writer is not None:
                            for k, v in record.items():
                                if k not in ("step", "epoch"):
                                    writer.add_scalar(f"train/{k}", v, self.step)
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{logs['lr']:.3g}", img_s=f"{throughput:.1f}")
                        if self.step % t["log_every"] == 0 or self.step == stop_at:
                            # the method's own scalars (loss parts, SlotCon's n_slots, ...) follow
                            extras = "".join(f" {k} {v:.4g}" for k, v in logs.items() if k not in ("lr", "momentum"))
                            log.info("step %d/%d epoch %d loss %.4f lr %.4g m %.5f %.1f img/s%s",
                                     self.step, self.total_steps, epoch, last_loss, logs["lr"],
                                     logs["momentum"], throughput, extras)
                    if self.step % t["ckpt_every"] == 0 and self.step < stop_at:
                        self.save()
                    if self.step >= stop_at or self._stop_requested:
                        break
            self.save()
            summary = {"step": self.step, "total_steps": self.total_steps, "loss": last_loss,
                       "images_skipped": self.images_skipped, "nonfinite_total": self.nonfinite_total,
                       "out": self.out}
            if self.dist.is_main:
                log.info("done: %s", summary)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            if metrics is not None:
                metrics.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            if self.dist.is_main:
                logging.getLogger("objssl").removeHandler(self._log_handler)
                self._log_handler.close()
        return summary

    def _optimizer_step(self, micro_batches: list[Any]) -> tuple[float, dict[str, float]]:
        accum = len(micro_batches)
        self.scheduler.step_update(self.step)
        total = torch.zeros((), device=self.device)
        extra: dict[str, torch.Tensor] = {}
        for j, batch in enumerate(micro_batches):
            self.images_skipped += int(torch.as_tensor(batch.get("skipped", 0)).sum()) if isinstance(batch, dict) else 0
            batch = _to_device(batch, self.device, self.channels_last)
            sync_ctx = self.model.no_sync() if isinstance(self.model, DDP) and j < accum - 1 else contextlib.nullcontext()
            amp_ctx = (
                torch.autocast(self.device.type, dtype=self.amp_dtype)
                if self.amp_dtype is not None else contextlib.nullcontext()
            )
            with sync_ctx:
                with amp_ctx:
                    out = self.model(batch)
                loss = out["loss"].float() / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
            for k, v in out.items():
                if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1:
                    extra[k] = extra.get(k, 0) + v.detach().float() / accum
        finite = all_reduce_min(torch.isfinite(total).float()).item() > 0
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_total += 1
            self.nonfinite_in_row += 1
            log.warning("step %d: non-finite loss, step skipped (%d in a row, %d in all)",
                        self.step, self.nonfinite_in_row, self.nonfinite_total)
            if self.nonfinite_in_row >= self.cfg["train"]["max_nonfinite"]:
                raise TrainingDivergedError(
                    f"{self.nonfinite_in_row} consecutive non-finite losses at step {self.step} "
                    f"(train.max_nonfinite={self.cfg['train']['max_nonfinite']}): training diverged; "
                    "lower optim.lr, use fp32/bf16, or resume from an earlier checkpoint"
                )
            momentum = self.method.momentum
        else:
            self.nonfinite_in_row = 0
            clip = self.cfg["optim"].get("clip_grad")
            if clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.method.parameters(), float(clip))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            momentum = self.method.update_target(self.step, self.total_steps)
        loss_value = all_reduce_mean(total).item()
        logs = {"lr": self.optimizer.param_groups[0]["lr"], "momentum": momentum}
        logs.update({k: all_reduce_mean(v).item() for k, v in extra.items()})
        if not math.isfinite(loss_value):
            loss_value = float("nan")
        return loss_value, logs
