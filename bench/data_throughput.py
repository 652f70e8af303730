"""What making views costs the loader, per method, on the loader path and on the device path, and what
the device side costs per batch; with ``--end-to-end``, training steps fed by N loader workers on both
paths against the same step fed from memory.

    python bench/data_throughput.py [--methods byol,soco,...] [--samples 30] [--batch 64] [--size 224]
                                    [--device auto|cpu|cuda] [--bf16] [--repeats 3]
    python bench/data_throughput.py --end-to-end [--backbone resnet50] [--batch 256] [--workers 2,4,8]
                                    [--steps 20] [--precision bf16] [--channels-last]

Tables (views mode):

1. every method's views (``objssl.methods.method_transform`` with ``data.augment_on`` ``loader`` or
   ``device``), read through ``ImageDataset`` exactly as training reads them (per-sample seeds, decode
   included): loader-path CPU ms/sample, device-path CPU ms/sample (decode + parameter draw + collate),
   the same with the JPEG draft-mode decode bound, their ratio, and the device side in ms per batch of
   ``--batch`` (``device_views``). Box methods read a random-box proposal cache of the demo photos (box
   selection costs what it costs with real proposals). ORL's stage-3 sample needs a stage-2 store and a
   neighbour per image; it is left out here;
2. BYOL's breakdown: decode alone, loader path, parameter draw, padding, and the device side with
   ``roi_align`` and ``per_sample`` resizing (``--bf16``: bfloat16 pixels on CUDA).

Loader-side figures are this thread's CPU time (``time.thread_time``: other processes' load does not
count), one thread as in a loader worker; the device side is CPU time of one thread on the CPU and wall
time on CUDA. ``--end-to-end`` runs the real trainer (``objssl.engine.Trainer``, BYOL) on the demo photos
repeated and reports the median img/s after ``--warmup`` steps; the ceiling is the same optimizer step
on one batch held in memory (views already made), so it is the step alone. Images: objssl's demo photos
(long side 512).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ("byol", "soco", "soco_star", "soco_c4", "slotcon", "univip")


def _cpu_ms(fn, n: int) -> float:
    fn(0)  # warm-up
    c0 = time.thread_time()
    for i in range(n):
        fn(i)
    return (time.thread_time() - c0) * 1e3 / n


def _views_table(args, paths, cache) -> None:
    from objssl.data.collate import collate_views
    from objssl.data.dataset import ImageDataset
    from objssl.methods import method_transform
    from objssl.registry import METHODS as REGISTRY

    devices = ["cpu"] + (["cuda"] if args.device in ("auto", "cuda") and torch.cuda.is_available() else [])
    if args.device == "cuda":
        devices = [d for d in devices if d == "cuda"]
    print(f"views at {args.size} px, demo photos (long side 512), one thread, {args.samples} samples; CPU ms/sample")
    head = f"{'method':<11}{'loader':>9}{'device':>9}{'+reduced':>10}{'device/loader':>15}"
    head += "".join(f"{d + ' ms/batch':>16}" for d in devices)
    print(head + f"   (batch {args.batch})")
    for name in args.methods:
        method_cfg = {"name": name, "image_size": args.size}
        cls = REGISTRY.get(name)
        data = {"proposals": cache if cls.needs_proposals(method_cfg) else None}
        loader_t = method_transform(method_cfg, {**data, "augment_on": "loader"})
        device_t = method_transform(method_cfg, {**data, "augment_on": "device"})
        loader = ImageDataset(paths, loader_t)
        device = ImageDataset(paths, device_t, reduced_decode=False)
        reduced = ImageDataset(paths, device_t, reduced_decode=True)
        n = len(paths)
        loader_ms = _cpu_ms(lambda i: loader[(i % n, i)], args.samples)
        device_ms = _cpu_ms(lambda i: device[(i % n, i)], args.samples)
        reduced_ms = _cpu_ms(lambda i: reduced[(i % n, i)], args.samples)
        samples = [device[(i % n, i)] for i in range(args.batch)]
        c0 = time.thread_time()
        batch = collate_views(samples)
        collate_ms = (time.thread_time() - c0) * 1e3 / args.batch
        row = f"{name:<11}{loader_ms:>9.1f}{device_ms + collate_ms:>9.1f}{reduced_ms + collate_ms:>10.1f}"
        row += f"{100 * (device_ms + collate_ms) / loader_ms:>14.1f}%"
        for dev in devices:
            from objssl.engine.setup import to_device

            on = to_device(batch, torch.device(dev), channels_last=False)
            device_t.device_views(on)  # warm-up
            clock = time.perf_counter if dev == "cuda" else time.thread_time
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            for _ in range(args.repeats):
                device_t.device_views(on)
            if dev == "cuda":
                torch.cuda.synchronize()
            row += f"{(clock() - t0) * 1e3 / args.repeats:>16.1f}"
        print(row)
    print("device = decode + parameter draw + collate (padding); +reduced: with the JPEG draft-mode decode bound")


def _end_to_end(args, paths) -> None:
    from objssl.config import apply_overrides, load_config
    from objssl.engine import Trainer

    folder = tempfile.mkdtemp(prefix="objssl_e2e_")
    listing = os.path.join(folder, "images.txt")
    need = args.batch * (args.steps + args.warmup + 2)
    with open(listing, "w") as f:
        f.write("\n".join(paths[i % len(paths)] for i in range(need)) + "\n")

    def config(augment_on: str, workers: int, out: str) -> dict:
        over = [f"backbone.name={args.backbone}", f"method.image_size={args.size}", f"data.path={listing}",
                f"data.augment_on={augment_on}", f"data.num_workers={workers}", f"train.out={out}",
                f"train.batch_size={args.batch}", f"train.max_steps={args.steps + args.warmup}",
                "train.ckpt_every=100000", "train.progress=false", f"train.precision={args.precision}",
                f"train.channels_last={str(args.channels_last).lower()}", "optim.warmup_steps=1"]
        return apply_overrides(load_config(), over)

    def img_per_s(out: str) -> float:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
        return statistics.median(r["img_per_s"] for r in records[args.warmup:])

    # the ceiling: one batch (views made in the loader) held in memory, the optimizer step alone
    trainer = Trainer(config("loader", 0, os.path.join(folder, "memory")))
    batch = next(iter(trainer.loop.step_batches(0, 1)))[1]
    for s in range(args.warmup):
        trainer.loop.optimizer_step(batch, s, trainer.total_steps)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(args.steps):
        trainer.loop.optimizer_step(batch, args.warmup + s, trainer.total_steps)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    ceiling = args.steps * args.batch / (time.perf_counter() - t0)
    del trainer
    print(f"BYOL {args.backbone}, batch {args.batch}, {args.size} px, precision {args.precision}, "
          f"channels_last {args.channels_last}; median img/s after {args.warmup} steps")
    print(f"{'fed by':<22}{'img/s':>10}{'% of memory':>14}")
    print(f"{'memory (ceiling)':<22}{ceiling:>10.1f}{100.0:>13.1f}%")
    for workers in args.workers:
        for augment_on in ("loader", "device"):
            out = os.path.join(folder, f"{augment_on}_{workers}")
            Trainer(config(augment_on, workers, out)).fit()
            ips = img_per_s(out)
            print(f"{f'{workers} workers, {augment_on}':<22}{ips:>10.1f}{100 * ips / ceiling:>13.1f}%")


def _per_sample(fn, n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``fn(i)`` over ``n`` calls."""
    fn(0)  # warm-up
    c0, w0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.thread_time() - c0) * 1e3 / n, (time.perf_counter() - w0) * 1e3 / n


def _byol_breakdown(args) -> None:
    from torchvision.transforms.v2 import functional as TF

    from objssl.data import demo_images, load_rgb
    from objssl.data.dataset import seeded
    from objssl.data.device import DeviceView, ViewBatch, apply_views, draw_image_views, pad_images
    from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform, ViewAugmentation

    torch.set_num_threads(1)
    paths = demo_images()
    args.size = args.size or 224
    augs = [ViewAugmentation(**{**a.__dict__, "size": args.size}) for a in BYOL_VIEWS]
    transform = MultiViewTransform.from_augmentations(augs)

    def loader_path(i: int) -> None:
        img = load_rgb(paths[i % len(paths)])
        with seeded(i):
            transform(img)

    def decode_only(i: int) -> None:
        TF.pil_to_tensor(load_rgb(paths[i % len(paths)]))

    def device_loader_side(i: int) -> None:
        img = TF.pil_to_tensor(load_rgb(paths[i % len(paths)]))
        with seeded(i):
            [v.as_tensors() for v in draw_image_views(augs, tuple(img.shape[-2:]))]

    rows: list[tuple[str, str, str]] = []
    n = args.samples
    dec_cpu, dec_wall = _per_sample(decode_only, n)
    load_cpu, load_wall = _per_sample(loader_path, n)
    dev_cpu, dev_wall = _per_sample(device_loader_side, n)

    # one batch of decoded images and parameters, as a collate would build it
    imgs, params = [], []
    for i in range(args.batch):
        img = TF.pil_to_tensor(load_rgb(paths[i % len(paths)]))
        with seeded(i):
            params.append([v.as_tensors() for v in draw_image_views(augs, tuple(img.shape[-2:]))])
        imgs.append(img)
    c0 = time.thread_time()
    for _ in range(args.repeats):
        padded, _ = pad_images(imgs)
        batches = [ViewBatch.collate([p[v] for p in params]) for v in range(len(augs))]
    pad_cpu = (time.thread_time() - c0) * 1e3 / args.repeats / args.batch

    rows.append(("decode (load_rgb + pil_to_tensor)", f"{dec_cpu:.2f}", f"{dec_wall:.2f}"))
    rows.append(("loader path: decode + BYOL transform", f"{load_cpu:.2f}", f"{load_wall:.2f}"))
    rows.append(("device path: decode + parameter draw", f"{dev_cpu:.2f}", f"{dev_wall:.2f}"))
    rows.append(("device path: + pad/collate (per sample)", f"{dev_cpu + pad_cpu:.2f}", ""))
    ratio = (dev_cpu + pad_cpu) / load_cpu
    print(f"BYOL views at {args.size}, demo photos (long side 512), one thread, {n} samples")
    print(f"{'loader side':<44}{'CPU ms/sample':>15}{'wall ms/sample':>16}")
    for name, cpu, wall in rows:
        print(f"{name:<44}{cpu:>15}{wall:>16}")
    print(f"device path / loader path CPU: {100 * ratio:.1f} % (target <= 25 %); "
          f"without decode: {100 * (dev_cpu - dec_cpu + pad_cpu) / max(load_cpu - dec_cpu, 1e-9):.1f} %")

    devices = ["cpu"] if args.device == "cpu" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "auto" and not devices:
        devices = ["cpu"]
    print(f"\n{'device side, batch ' + str(args.batch) + ', both views':<44}{'ms/batch':>15}{'ms/sample':>16}"
          "  (CPU: CPU time; CUDA: wall)")
    for dev in devices:
        dtype = torch.bfloat16 if (args.bf16 and dev == "cuda") else torch.float32
        x = padded.to(dev)
        for method in ("roi_align", "per_sample"):
            views = [DeviceView.from_augmentation(a, resize=method) for a in augs]
            apply_views(x, batches, views, dtype)  # warm-up
            if dev == "cuda":
                torch.cuda.synchronize()
            # CPU: this thread's CPU time (other processes' load does not count); CUDA: wall time
            clock = time.perf_counter if dev == "cuda" else time.thread_time
            t0 = clock()
            for _ in range(args.repeats):
                apply_views(x, batches, views, dtype)
            if dev == "cuda":
                torch.cuda.synchronize()
            ms = (clock() - t0) * 1e3 / args.repeats
            label = f"{dev} {str(dtype).replace('torch.', '')} {method}"
            print(f"{label:<44}{ms:>15.1f}{ms / args.batch:>16.2f}")



def main() -> None:
    from objssl.cli import main as cli
    from objssl.data import demo_images

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    p.add_argument("--samples", type=int, default=30, help="samples per loader-side measurement")
    p.add_argument("--batch", type=int, default=None, help="batch size (views: 64; --end-to-end: 256)")
    p.add_argument("--size", type=int, default=224, help="view side (method.image_size)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 pixels on CUDA (BYOL breakdown)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--repeats", type=int, default=3, help="timed device-side batches")
    p.add_argument("--end-to-end", action="store_true", help="training steps fed by loader workers")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--workers", default="2,4,8")
    p.add_argument("--steps", type=int, default=20, help="timed steps (--end-to-end)")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (--end-to-end)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    args.batch = args.batch or (256 if args.end_to_end else 64)
    paths = demo_images()
    if args.end_to_end:
        _end_to_end(args, paths)
        return
    torch.set_num_threads(1)
    cache = os.path.join(tempfile.mkdtemp(prefix="objssl_bench_"), "cache")
    assert cli(["proposals", "--source", "random", "--out", cache, "--no-progress"]) == 0
    _views_table(args, paths, cache)
    print()
    _byol_breakdown(args)


if __name__ == "__main__":
    main()
