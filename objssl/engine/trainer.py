"""The trainer: one run of any method, from a config to checkpoints.

:class:`Trainer` ties the parts together: it validates its own copy of the config, builds the run
(:mod:`objssl.engine.build`, on the device and process group of :mod:`objssl.engine.setup`),
resumes, runs the step loop (:mod:`objssl.engine.loop`), reports each step
(:mod:`objssl.engine.run_log`) and writes checkpoints.

* Exact resume: model, EMA target, optimizer, grad scaler, RNG states, the position inside the
  epoch and the run's counts; the learning-rate schedule is rebuilt for the run's length.
* A non-finite step is skipped and leaves no trace (see :mod:`objssl.engine.loop`); no periodic
  checkpoint is written during a run of skipped steps, and too many in a row abort with one line
  naming the last good checkpoint. No checkpoint holds a non-finite tensor.
* SIGTERM/SIGINT finish the step, write a checkpoint and stop (``summary["stopped"]``).
* A fresh run refuses an ``OUT`` that holds a run's checkpoints, unless resuming or overwriting.

Output folder::

    OUT/config.yaml  OUT/log.txt  OUT/metrics.jsonl  OUT/tb/  OUT/checkpoints/step_XXXXXXXX.pth

With ``train.eval_every`` the kNN monitor (:mod:`objssl.engine.monitor`) adds ``eval/knn_top1``
and ``eval/knn_top5`` to every N-th step's record.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

from objssl import checkpoint as ckpt_io
from objssl.config import validate_config
from objssl.engine.build import build_parts, resolve_data
from objssl.engine.loop import StepLoop, StepResult
from objssl.engine.monitor import KnnMonitor, monitored_backbone
from objssl.engine.progress import Progress
from objssl.engine.resume import find_resume_checkpoint, load_model_state, nonfinite_tensors
from objssl.engine.run_folder import claim_out_folder, clean_temp_files
from objssl.engine.run_log import RunLog
from objssl.engine.setup import setup_runtime
from objssl.engine.signals import StopRequest
from objssl.errors import UserError

__all__ = ["Trainer", "TrainingDivergedError", "resolve_data"]

log = logging.getLogger("objssl.train")


class TrainingDivergedError(UserError):
    """Too many consecutive non-finite steps, or a non-finite tensor about to be checkpointed."""


class Trainer:
    """Builds a run from a config, then trains it with :meth:`fit`.

    Args:
        cfg: a full config (see :mod:`objssl.config`); it is copied, never changed.
        resume: ``True`` resumes from the newest good checkpoint in ``OUT/checkpoints`` (starting
            fresh with a warning if there is none); a path resumes from that file.
        overwrite: start fresh even though ``OUT`` holds a run: the old one is moved to
            ``OUT.old-<time>``.
    """

    def __init__(self, cfg: dict[str, Any], *, resume: bool | str = False, overwrite: bool = False) -> None:
        self._started = time.time()
        self.cfg = copy.deepcopy(cfg)
        validate_config(self.cfg)
        t = self.cfg["train"]
        self.runtime = setup_runtime(t)
        self.dist = self.runtime.dist
        self.device = self.runtime.device
        self.amp_dtype = self.runtime.amp_dtype
        self.out = t["out"]
        self.ckpt_dir = os.path.join(self.out, "checkpoints")
        claim_out_folder(self.out, self.ckpt_dir, resume=bool(resume), overwrite=overwrite, is_main=self.dist.is_main)

        self.parts = build_parts(self.cfg, self.runtime)
        p = self.parts
        self.paths, self.method, self.model = p.paths, p.method, p.model
        self.dataset, self.collate_fn = p.dataset, p.collate_fn
        self.optimizer, self.scaler, self.schedule = p.optimizer, p.scaler, p.schedule
        self.steps_per_epoch, self.total_steps = p.steps_per_epoch, p.total_steps
        self.lr, self.warmup_steps = p.schedule.lr, p.schedule.warmup_steps
        self.loop = StepLoop(p, self.runtime, self.cfg)
        # the kNN eval of train.eval_every runs on the main process only
        self.monitor = KnnMonitor.from_config(self.cfg, self.device) if self.dist.is_main else None

        self.progress = Progress(total_steps=self.total_steps)
        self.resumed_from: str | None = None
        self.last_checkpoint: str | None = None  # newest checkpoint of this run known to be good
        self._saved_step: int | None = None  # the step the newest checkpoint holds
        if self.dist.is_main:
            clean_temp_files(self.ckpt_dir, self._started)
        if resume:
            path = resume if isinstance(resume, str) else find_resume_checkpoint(self.ckpt_dir)
            if path is None:
                log.warning("--resume: no checkpoint in %s, starting from scratch", self.ckpt_dir)
            else:
                self._load(path)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return self.progress.step

    @step.setter
    def step(self, value: int) -> None:
        self.progress.step = int(value)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        bcfg = self.cfg["backbone"]
        return {
            "method": self.cfg["method"]["name"],
            "backbone": {"name": bcfg["name"], "kwargs": dict(bcfg.get("kwargs") or {})},
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.scheduler.state_dict(),  # for the record: rebuilt on resume
            "scaler": self.scaler.state_dict(),
            "rng": ckpt_io.rng_state(),
            "progress": self.progress.state_dict(),
            "config": self.cfg,
        }

    def save(self) -> str | None:
        """Write a checkpoint of the current step (main process), refusing non-finite tensors."""
        # checked on every rank (their weights are the same), so all of them stop together
        bad = nonfinite_tensors({"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict()})
        if bad:
            raise TrainingDivergedError(
                f"step {self.step}: not writing a checkpoint, {len(bad)} tensor(s) are not finite "
                f"(e.g. {bad[0]}); {self._last_good()}"
            )
        self._saved_step = self.step
        if not self.dist.is_main:
            return None
        path = ckpt_io.save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.cfg["train"]["keep_last"])
        self.last_checkpoint = path
        log.info("checkpoint: %s", path)
        return path

    def _last_good(self) -> str:
        if self.last_checkpoint is None:
            return "there is no earlier checkpoint of this run"
        return f"the last good checkpoint is {self.last_checkpoint} (continue from it with --resume-from)"

    def _load(self, path: str) -> None:
        ckpt = ckpt_io.load_checkpoint(path)
        if ckpt.get("method") != self.cfg["method"]["name"] or ckpt["backbone"]["name"] != self.cfg["backbone"]["name"]:
            raise UserError(
                f"cannot resume from {path}: it is a {ckpt.get('method')}/{ckpt['backbone']['name']} "
                f"checkpoint, the config asks for {self.cfg['method']['name']}/{self.cfg['backbone']['name']}"
            )
        load_model_state(self.method, ckpt["model"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        ckpt_io.set_rng_state(ckpt["rng"])
        # the schedule is not restored: it is a function of the step, built for this run's length
        saved = Progress.from_state_dict(ckpt["progress"])
        if saved.total_steps != self.total_steps:
            log.warning("resuming a %d-step run as a %d-step one: the lr and momentum schedules are rebuilt "
                        "for %d steps and continue from step %d", saved.total_steps, self.total_steps,
                        self.total_steps, saved.step)
        saved.total_steps = self.total_steps
        self.progress = saved
        self.resumed_from = self.last_checkpoint = path
        self._saved_step = self.step
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ training
    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train until the schedule ends (or for ``stop_after_steps`` more steps), then checkpoint.

        Returns a summary: ``step``, ``total_steps``, ``loss`` (last step), ``images_skipped``,
        ``nonfinite_total``, ``counters``, ``out`` and ``stopped`` (True when a signal stopped it).
        """
        t = self.cfg["train"]
        prog = self.progress
        stop_at = self.total_steps if stop_after_steps is None else min(self.total_steps, prog.step + stop_after_steps)
        run_log = RunLog(self.out, self.cfg, start_step=prog.step, stop_at=stop_at, enabled=self.dist.is_main)
        last_loss = float("nan")
        stopped = False
        try:
            run_log.info(
                "training %s on %s: %d images, %d steps (%d/epoch), global batch %d, lr %.4g, "
                "warmup %d steps, %s, precision %s, world %d, views made %s",
                self.cfg["method"]["name"], self.cfg["backbone"]["name"], len(self.paths), self.total_steps,
                self.steps_per_epoch, t["batch_size"], self.lr, self.warmup_steps, self.device,
                self.amp_dtype or "fp32", self.dist.world_size,
                "on the device" if self.parts.device_views is not None else "in the loader",
            )
            if prog.step >= stop_at:
                run_log.info("already at step %d of %d: nothing to train", prog.step, self.total_steps)
            self.method.train()
            with StopRequest() as stop:
                t0 = time.perf_counter()
                for epoch, micro_batches in self.loop.step_batches(prog.step, stop_at):
                    result = self.loop.optimizer_step(micro_batches, prog.step, self.total_steps)
                    self._count(result)
                    now = time.perf_counter()
                    throughput, t0 = t["batch_size"] / max(now - t0, 1e-9), now
                    last_loss = result.loss
                    record, line = self._report(result, epoch, throughput, stop_at)
                    if self.monitor is not None and self.monitor.due(prog.step):
                        record.update(self.monitor.evaluate(monitored_backbone(self.method), prog.step))
                        t0 = time.perf_counter()  # the eval's time is no step's
                    run_log.step(record, line)
                    stopped = stop.requested
                    # no periodic checkpoint inside a run of skipped steps: the last one written
                    # stays the last good state from before it
                    due = prog.step % t["ckpt_every"] == 0 and prog.step < stop_at and not stopped
                    if due and prog.nonfinite_in_row == 0:
                        self.save()
                    if stopped:
                        break
                if self._saved_step != prog.step:
                    self.save()
            stopped = stopped and prog.step < stop_at
            summary = {"step": prog.step, "total_steps": self.total_steps, "loss": last_loss,
                       "images_skipped": prog.images_skipped, "nonfinite_total": prog.nonfinite_total,
                       "counters": dict(sorted(prog.counters.items())), "out": self.out, "stopped": stopped}
            if stopped:
                run_log.info("stopped at step %d/%d: %s", prog.step, self.total_steps, summary)
            else:
                run_log.info("done: %s", summary)
        finally:
            run_log.close()
        return summary

    def _count(self, result: StepResult) -> None:
        prog = self.progress
        prog.step += 1
        prog.add(result.images_skipped, result.counters)
        if result.finite:
            prog.nonfinite_in_row = 0
            return
        prog.nonfinite_total += 1
        prog.nonfinite_in_row += 1
        log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row, %d in all)",
                    prog.step, prog.nonfinite_in_row, prog.nonfinite_total)
        limit = self.cfg["train"]["max_nonfinite"]
        if prog.nonfinite_in_row >= limit:
            raise TrainingDivergedError(
                f"training diverged: {prog.nonfinite_in_row} consecutive non-finite losses at step {prog.step} "
                f"(train.max_nonfinite={limit}); lower optim.lr or use fp32/bf16; {self._last_good()}"
            )

    def _report(self, result: StepResult, epoch: int, throughput: float, stop_at: int) -> tuple[dict, str | None]:
        prog = self.progress
        record = {"step": prog.step, "epoch": epoch, "loss": result.loss, "lr": result.lr,
                  "momentum": result.momentum, "img_per_s": throughput,
                  "images_skipped": prog.images_skipped, "nonfinite_total": prog.nonfinite_total}
        record.update(sorted(prog.counters.items()))
        record.update({k: v for k, v in result.scalars.items() if k not in record})
        line = None
        if prog.step % self.cfg["train"]["log_every"] == 0 or prog.step == stop_at:
            # the method's own scalars (loss parts, SlotCon's n_slots, ...), then the counts so far
            extras = "".join(f" {k} {v:.4g}" for k, v in result.scalars.items())
            counts = "".join(f" {k} {v}" for k, v in sorted(prog.counters.items()))
            line = (f"step {prog.step}/{self.total_steps} epoch {epoch} loss {result.loss:.4f} lr {result.lr:.4g} "
                    f"m {result.momentum:.5f} {throughput:.1f} img/s{extras} images_skipped {prog.images_skipped}"
                    f"{counts}")
        return record, line
