"""Building a run's parts from its config, in the order that fails cheapest first.

validate → device and process group (:mod:`objssl.engine.setup`) → image paths → the method's
data check → backbone → method → dataset (its views made in the loader or, ``data.augment_on``, on
the training device) → sampler and loader → optimizer, schedule, grad scaler.
A wrong data path or proposal cache therefore fails before any model is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objssl.backbones import create_backbone
from objssl.data.sampler import ResumableBatchSampler
from objssl.engine.optim import build_optimizer, build_scheduler, scaled_lr, warmup_steps_for
from objssl.engine.setup import Runtime, place_model
from objssl.engine.signals import ignore_stop_signals
from objssl.methods import create_method
from objssl.methods.base import augment_on_of
from objssl.registry import METHODS

__all__ = ["Parts", "Schedule", "build_parts", "build_schedule", "build_loader", "resolve_data", "resolve_decode_on",
           "total_steps_for"]

log = logging.getLogger("objssl.train")


def resolve_data(data_cfg: dict[str, Any]) -> list[str]:
    """The image paths of ``data.path`` (the demo photos when it is null). Errors are one line."""
    if data_cfg.get("path") in (None, ""):
        from objssl.data.demo import demo_images

        return demo_images()
    from objssl.images.sources import list_images

    return list_images(data_cfg["path"], image_root=data_cfg.get("image_root"))


def _fit_demo_batch(cfg: dict[str, Any], num_images: int, world_size: int) -> None:
    """The bundled demo photos are a handful: lower ``train.batch_size`` in ``cfg`` (the run's own
    copy) to what they allow instead of refusing to run, and say so."""
    t = cfg["train"]
    if cfg["data"].get("path") not in (None, "") or t["batch_size"] <= num_images:
        return
    per_step = world_size * t["accum_steps"]
    fitted = max(per_step, num_images // per_step * per_step)
    log.warning("demo data has %d photos: train.batch_size %d lowered to %d (and the lr scaled with it)",
                num_images, t["batch_size"], fitted)
    t["batch_size"] = fitted


def _check_method_data(cfg: dict[str, Any], paths: list[str]) -> None:
    cls = METHODS.get(cfg["method"]["name"])
    cls.check_data(paths, cfg)
    if cfg["data"].get("proposals") and "proposals" not in cls.uses_data:
        log.warning("data.proposals is set but %s does not read proposals; it is ignored", cfg["method"]["name"])


def _build_method_and_dataset(cfg: dict[str, Any], backbone: nn.Module, paths: list[str],
                              device: torch.device) -> tuple[nn.Module, Dataset]:
    """The method, then its dataset (the method contract: ``method.build_dataset(paths, cfg)``), with
    ``data.augment_on`` resolved for ``device``."""
    name = cfg["method"]["name"]
    method = create_method(name, backbone, **{k: v for k, v in cfg["method"].items() if k != "name"})
    augment_on = augment_on_of(cfg["data"], device)
    data_cfg = {**cfg["data"], "augment_on": augment_on, "decode_on": resolve_decode_on(cfg["data"], augment_on, device)}
    return method, method.build_dataset(paths, {**cfg, "data": data_cfg})


def resolve_decode_on(data_cfg: dict[str, Any], augment_on: str, device: torch.device) -> str:
    """Where the JPEGs of a run are decoded: ``device`` (in batches, nvJPEG) when the views are made on a
    CUDA training device and ``data.decode`` resolves to cuda; ``loader`` (Pillow in the workers) otherwise."""
    if augment_on != "device" or device.type != "cuda":
        return "loader"
    from objssl.images.batch_decode import decode_device

    return "device" if decode_device(data_cfg.get("decode", "auto")) == "cuda" else "loader"


def total_steps_for(train_cfg: dict[str, Any], steps_per_epoch: int) -> int:
    return train_cfg["max_steps"] if train_cfg["max_steps"] is not None else train_cfg["epochs"] * steps_per_epoch


@dataclass
class Schedule:
    """The per-step learning-rate schedule; a pure function of the step, rebuilt (never restored)
    on resume so a longer or shorter run gets the schedule of its new length."""

    lr: float  # peak lr (after linear scaling)
    warmup_steps: int
    total_steps: int
    scheduler: Any  # timm CosineLRScheduler, stepped with step_update(step)

    def set_step(self, step: int) -> float:
        """Set the optimizer's lr for optimizer step ``step`` (0-based); returns it."""
        self.scheduler.step_update(step)
        return self.scheduler.optimizer.param_groups[0]["lr"]


def build_schedule(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], steps_per_epoch: int, total_steps: int) -> Schedule:
    lr = scaled_lr(cfg["optim"], cfg["train"]["batch_size"])
    warmup = warmup_steps_for(cfg["optim"], steps_per_epoch, total_steps)
    return Schedule(lr, warmup, total_steps, build_scheduler(optimizer, cfg["optim"], lr, total_steps, warmup))


def build_loader(dataset: Dataset, sampler: ResumableBatchSampler, collate_fn: Any, num_workers: int,
                 pin_memory: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        # workers leave SIGTERM/SIGINT to the main process, which stops cleanly after the step
        worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
    )


@dataclass
class Parts:
    """Everything a run is made of (see the module docstring for the order they are built in)."""

    paths: list[str]
    sampler: ResumableBatchSampler
    method: nn.Module  # the objssl Method
    model: nn.Module  # what is called: the method, or its DDP wrapper
    dataset: Dataset
    collate_fn: Any
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    total_steps: int
    #: makes the views of a batch on the training device (``data.augment_on=device``), else None
    device_views: Any = None


def build_parts(cfg: dict[str, Any], runtime: Runtime) -> Parts:
    """Build a run from a validated config. ``cfg`` is the run's own copy: the demo-data batch
    size is lowered in it."""
    t = cfg["train"]
    paths = resolve_data(cfg["data"])
    _check_method_data(cfg, paths)
    _fit_demo_batch(cfg, len(paths), runtime.dist.world_size)
    sampler = ResumableBatchSampler(
        len(paths), t["batch_size"], accum_steps=t["accum_steps"], rank=runtime.dist.rank,
        world_size=runtime.dist.world_size, seed=t["seed"],
    )
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = total_steps_for(t, steps_per_epoch)

    torch.manual_seed(t["seed"])
    bcfg = cfg["backbone"]
    backbone = create_backbone(
        bcfg["name"], out_indices=bcfg.get("out_indices"), pretrained_file=bcfg.get("pretrained_file"),
        **(bcfg.get("kwargs") or {}),
    )
    method, dataset = _build_method_and_dataset(cfg, backbone, paths, runtime.device)
    collate_fn = getattr(method, "collate_fn", None)
    device_views = dataset.transform.device_views if getattr(dataset, "device_mode", False) else None
    if device_views is not None and getattr(dataset, "decode_on", "loader") == "device":
        from objssl.data.device.encoded import DecodeOnDevice

        device_views = DecodeOnDevice(device_views, min_side=cfg["data"]["min_side"])
    method, model = place_model(method, runtime, t["sync_bn"])

    optimizer = build_optimizer(method, cfg["optim"], scaled_lr(cfg["optim"], t["batch_size"]))
    schedule = build_schedule(optimizer, cfg, steps_per_epoch, total_steps)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    return Parts(paths, sampler, method, model, dataset, collate_fn, optimizer, schedule, scaler,
                 steps_per_epoch, total_steps, device_views)
