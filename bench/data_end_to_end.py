"""BYOL training steps fed by ``N`` loader workers vs the same step fed from memory (``--end-to-end`` of
:mod:`bench.data_throughput`).

One :class:`objssl.engine.Trainer` per data path (``loader``: views made in the workers; ``device``:
drawn in the workers, made on the device with Pillow decoding in the workers; on CUDA also
``device+gpu decode``: the workers send JPEG bytes, decoded in batches on the GPU). Each row runs the
trainer's own loop (``trainer.loop.step_batches`` → ``optimizer_step``: the engine's DataLoader with
``N`` workers, pinned memory, ``to_device`` and, on the device paths, ``device_views(batch)`` inside the
step), ``--warmup`` untimed steps first (the workers' start and their prefetch queue, 4 batches each),
then ``--steps`` timed ones. ``memory``: one batch of that path, collated once and kept in pinned
memory, fed to ``optimizer_step`` again and again (its copy to the device and its views are still made
in the step): the ceiling. Data: the demo photos linked again and again into a folder, one epoch per row.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time

import torch

#: (row label, data.augment_on, data.decode)
PATHS = (("loader", "loader", "cpu"), ("device", "device", "cpu"), ("device+gpu decode", "device", "cuda"))


def _trainer(args, out: str, data: str, augment_on: str, decode: str, gpu: bool):
    from objssl.config import apply_overrides, load_config
    from objssl.engine import Trainer

    cfg = apply_overrides(load_config(), [
        f"data.path={data}", "method.name=byol", f"backbone.name={args.backbone}", f"method.image_size={args.image_size}",
        f"train.batch_size={args.batch}", "train.max_steps=1000000", f"train.out={out}", "train.progress=false",
        "train.tensorboard=false", f"train.precision={'bf16' if gpu else 'fp32'}", f"train.channels_last={str(gpu).lower()}",
        f"train.device={args.device}", f"data.augment_on={augment_on}", f"data.decode={decode}", "data.num_workers=0",
        "optim.warmup_steps=1",
    ])
    return Trainer(cfg)


def _memory_rate(trainer, args, sync) -> float:
    """img/s of ``optimizer_step`` on one batch made once (pinned when on CUDA)."""
    from torch.utils.data import default_collate

    collate = trainer.collate_fn or default_collate
    batch = collate([trainer.dataset[(i % len(trainer.dataset), i)] for i in range(args.batch)])
    if trainer.device.type == "cuda":
        batch = _pin(batch)
    loop = trainer.loop
    for s in range(3):
        loop.optimizer_step([batch], s, trainer.total_steps)
    sync()
    t0 = time.perf_counter()
    for s in range(args.steps):
        loop.optimizer_step([batch], 3 + s, trainer.total_steps)
    sync()
    return args.steps * args.batch / (time.perf_counter() - t0)


def _pin(obj):
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, dict):
        return {k: _pin(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_pin(v) for v in obj]
    return obj


def _loader_rate(trainer, workers: int, warmup: int, args, sync) -> float:
    """img/s of the trainer's loop over its own loader with ``workers`` workers, from one epoch's start."""
    loop = trainer.loop
    loop.num_workers = workers
    spe = trainer.steps_per_epoch
    start = (trainer.step // spe + 1) * spe  # a fresh epoch: one loader for the whole row
    t0, done = None, 0
    for _, micro in loop.step_batches(start, start + warmup + args.steps):
        loop.optimizer_step(micro, start + done, trainer.total_steps)
        done += 1
        if done == warmup:
            sync()
            t0 = time.perf_counter()
    sync()
    trainer.step = start + done
    return args.steps * args.batch / (time.perf_counter() - t0)


def run(args) -> None:
    from objssl.data.demo import demo_images

    args.batch = args.batch or 256
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = args.device == "cuda"
    workers = [int(n) for n in args.workers.split(",")]
    warmups = {n: args.warmup if args.warmup is not None else 4 * n + 2 for n in workers}
    per_epoch = max(warmups.values()) + args.steps
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    paths = [p for p in PATHS if gpu or p[2] == "cpu"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        photos = demo_images()
        for i in range(per_epoch * args.batch):
            os.symlink(photos[i % len(photos)], os.path.join(data, f"{i:06d}.jpg"))
        for label, augment_on, decode in paths:
            trainer = _trainer(args, os.path.join(tmp, label.replace(" ", "_")), data, augment_on, decode, gpu)
            trainer.method.train()
            ceiling = _memory_rate(trainer, args, sync)
            rows.append(("memory", label, ceiling, 100.0))
            for n in workers:
                rate = _loader_rate(trainer, n, warmups[n], args, sync)
                rows.append((str(n), label, rate, 100 * rate / ceiling))
            del trainer  # its model and optimizer state leave the GPU before the next path's
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
    load = os.getloadavg()
    print(f"BYOL {args.backbone} at {args.image_size}, batch {args.batch}, {args.device} "
          f"{'bf16 channels_last' if gpu else 'fp32'}, {args.steps} timed steps per row "
          f"(after {', '.join(f'{warmups[n]} for N={n}' for n in workers)}); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'N':>7}  {'path':<18}{'img/s':>10}{'% of in-memory':>16}")
    for n, label, rate, pct in rows:
        print(f"{n:>7}  {label:<18}{rate:>10.1f}{pct:>15.1f}%")
