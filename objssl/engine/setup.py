"""Where a run computes: the device, the autocast precision, and the process group (DDP)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from objssl.distributed import DistInfo, init_distributed
from objssl.errors import UserError

__all__ = ["Runtime", "pick_device", "autocast_dtype", "setup_runtime", "place_model", "to_device"]


@dataclass(frozen=True)
class Runtime:
    """The device of this process, its place in the job, and the compute precision."""

    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None  # None: fp32
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def setup_runtime(train_cfg: dict[str, Any]) -> Runtime:
    """Pick the device, join torchrun's process group if there is one (one GPU per local rank)."""
    device = pick_device(train_cfg["device"])
    dist = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    return Runtime(
        device=device,
        dist=dist,
        amp_dtype=autocast_dtype(train_cfg["precision"], device),
        channels_last=bool(train_cfg["channels_last"]) and device.type == "cuda",
    )


def place_model(method: nn.Module, runtime: Runtime, sync_bn: bool) -> tuple[nn.Module, nn.Module]:
    """Move ``method`` to the device; under multi-GPU DDP convert BatchNorm to SyncBatchNorm (if
    ``sync_bn``) and wrap it. Returns ``(method, model to call)``; they are the same module
    without DDP."""
    method.to(runtime.device)
    if runtime.channels_last:
        method.to(memory_format=torch.channels_last)
    if runtime.dist.is_distributed and runtime.device.type == "cuda" and sync_bn:
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if not runtime.dist.is_distributed:
        return method, method
    ids = [runtime.dist.local_rank] if runtime.device.type == "cuda" else None
    return method, DDP(method, device_ids=ids)


def to_device(obj: Any, device: torch.device, channels_last: bool) -> Any:
    """A batch (nested dicts/lists of tensors) on ``device``; 4-d float tensors channels-last if asked."""
    if isinstance(obj, torch.Tensor):
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            return obj.to(device, non_blocking=True, memory_format=torch.channels_last)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj
