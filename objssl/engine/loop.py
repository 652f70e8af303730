"""The step loop: micro-batches from the loader, forward/backward, and one optimizer step.

A step whose loss (or, without a grad scaler, whose gradient) is not finite on any rank is skipped
and leaves the run exactly as before it: no optimizer or EMA update, and the buffers the forward
changed (BatchNorm running statistics, a loss's centre) are put back.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from objssl.distributed import all_reduce_mean, all_reduce_min, any_rank
from objssl.engine.build import Parts, build_loader
from objssl.engine.progress import batch_counts, sum_over_ranks
from objssl.engine.setup import Runtime, to_device
from objssl.errors import DataError

__all__ = ["StepLoop", "StepResult"]

log = logging.getLogger("objssl.train")


@dataclass
class StepResult:
    """One optimizer step, as reported: all values are means (loss, scalars) or sums (counts) over ranks."""

    loss: float  # nan when not finite
    finite: bool  # False: the step was skipped
    lr: float
    momentum: float
    scalars: dict[str, float]  # the method's other outputs (loss parts, ...)
    images_skipped: int  # bad files passed over while drawing this step's samples
    counters: dict[str, int]  # this step's batch["counters"]


def _snapshot_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in module.named_buffers()}


@torch.no_grad()
def _restore_buffers(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, value in saved.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        current = owner._buffers.get(attr)
        if current is not None and current.shape == value.shape and current.dtype == value.dtype:
            current.copy_(value)  # in place: DDP and others hold references to the buffer
        else:  # the forward replaced the buffer object
            owner._buffers[attr] = value


def _data_error(exc: BaseException, step: int) -> DataError:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text and lines:  # re-raised from a loader worker: the last line is the error
        reason = lines[-1].strip()
    else:
        reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return DataError(f"reading the data for step {step + 1} failed: {reason}; fix the data, then continue with --resume")


class StepLoop:
    """Runs optimizer steps over the parts of a run (:class:`objssl.engine.build.Parts`)."""

    def __init__(self, parts: Parts, runtime: Runtime, cfg: dict[str, Any]) -> None:
        self.parts = parts
        self.runtime = runtime
        self.accum = int(cfg["train"]["accum_steps"])
        self.num_workers = int(cfg["data"]["num_workers"])
        self.clip_grad = cfg["optim"].get("clip_grad")

    def step_batches(self, start_step: int, stop_at: int) -> Iterator[tuple[int, list[Any]]]:
        """``(epoch, micro-batches of one optimizer step)`` for the steps ``start_step .. stop_at - 1``.

        A failure while reading the data (every image gone, a worker killed) is one-line DataError.
        """
        p = self.parts
        step = start_step
        while step < stop_at:
            epoch, in_epoch = divmod(step, p.steps_per_epoch)
            p.sampler.set_epoch(epoch, in_epoch)
            loader = build_loader(p.dataset, p.sampler, p.collate_fn, self.num_workers,
                                  pin_memory=self.runtime.device.type == "cuda")
            batches = iter(loader)
            group: list[Any] = []
            error, other_failed = None, False
            while step < stop_at:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (RuntimeError, OSError, ValueError) as exc:
                    error = _data_error(exc, step)
                    log.debug("the data error in full", exc_info=exc)  # shown with objssl -v
                    break
                group.append(batch)
                if len(group) == self.accum:
                    # a data error on another process ends this one too (else it waits in the
                    # step's collectives for ever); the failing process raises its own error below
                    if any_rank(False):
                        other_failed = True
                        break
                    yield epoch, group
                    group = []
                    step += 1
            # shut the workers down now: raised from the loader's frames, the error would keep
            # them alive (its traceback refers to the iterator) until the process exits
            del batches, loader
            if error is not None:
                any_rank(True)  # tell the others, who are waiting to start this step
                raise error
            if other_failed:
                raise DataError(f"reading the data for step {step + 1} failed on another process (its log "
                                "names the error); fix the data, then continue with --resume")

    def optimizer_step(self, micro_batches: list[Any], step: int, total_steps: int) -> StepResult:
        """Forward/backward over the micro-batches, then one optimizer step and EMA update (``step``
        is 0-based), or a skipped step if anything is non-finite."""
        p, rt = self.parts, self.runtime
        method, model = p.method, p.model
        accum = len(micro_batches)
        lr = p.schedule.set_step(step)
        # the forward updates buffers even when the step is then skipped: keep them to put back
        saved = _snapshot_buffers(method)
        total = torch.zeros((), device=rt.device)
        extra: dict[str, torch.Tensor] = {}
        skipped, counters = 0, {}
        for j, batch in enumerate(micro_batches):
            batch = to_device(batch, rt.device, rt.channels_last)
            if p.device_views is not None:  # data.augment_on=device: the views are made here
                batch = to_device(p.device_views(batch), rt.device, rt.channels_last)
            # counted after the views are made: a file decoded on the device can still be a bad image
            s, c = batch_counts(batch)
            skipped += s
            for k, v in c.items():
                counters[k] = counters.get(k, 0) + v
            no_sync = isinstance(model, DDP) and j < accum - 1
            with model.no_sync() if no_sync else contextlib.nullcontext():
                with rt.autocast():
                    out = model(batch)
                loss = out["loss"].float() / accum
                p.scaler.scale(loss).backward()
            total += loss.detach()
            for k, v in out.items():
                if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1:
                    extra[k] = extra.get(k, 0) + v.detach().float() / accum
        skipped, counters = sum_over_ranks(skipped, counters, rt.device)

        finite = torch.isfinite(total)
        if finite and not p.scaler.is_enabled():
            # (a grad scaler finds and skips non-finite gradients itself)
            grads = [q.grad for q in method.parameters() if q.grad is not None]
            if grads:
                finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        finite_all = all_reduce_min(finite.float()).item() > 0
        if not finite_all:
            p.optimizer.zero_grad(set_to_none=True)
            _restore_buffers(method, saved)
            momentum = method.momentum
        else:
            if self.clip_grad:
                p.scaler.unscale_(p.optimizer)
                torch.nn.utils.clip_grad_norm_(method.parameters(), float(self.clip_grad))
            p.scaler.step(p.optimizer)
            p.scaler.update()
            p.optimizer.zero_grad(set_to_none=True)
            momentum = method.update_target(step, total_steps)
        loss_value = all_reduce_mean(total).item()
        if not math.isfinite(loss_value):
            loss_value = float("nan")
        scalars = {k: all_reduce_mean(v).item() for k, v in extra.items()}
        return StepResult(loss_value, finite_all, lr, momentum, scalars, skipped, counters)
