"""CPU cost per sample of making each method's views in the loader vs drawing their parameters for the
device, and the device-side cost of a batch; with ``--end-to-end``, training-step throughput fed by
loader workers (:mod:`bench.data_end_to_end`).

    python bench/data_throughput.py [--methods byol,soco,...] [--samples 40] [--batch 64] [--image-size 224]
                                    [--device cpu|cuda] [--bf16] [--repeats 3]
    python bench/data_throughput.py --end-to-end [--backbone resnet50] [--batch 256] [--workers 2,4,8] ...

Per method (``objssl.methods.method_transform`` of ``{"name": M, "image_size": S}``, built with
``augment_on`` ``loader`` and ``device``; box methods read a random-proposal cache of the photos,
``objssl proposals --source random``), every figure CPU ms of this thread (``time.thread_time``: other
processes' load does not count), one thread, as in a loader worker:

ORL stage 3 (``orl``): its ``NeighbourPairDataset`` over a stage-2 folder of random boxes and pairs
(:mod:`bench.data_orl_rows`), both images decoded at full size on the device path (no ``dev red`` or
``dev bytes``).

* ``loader``: ``ImageDataset(paths, loader transform)[(i, seed)]`` (decode + views);
* ``dev full`` / ``dev red``: ``ImageDataset(paths, device transform, reduced_decode=False|True)[(i, seed)]``
  (header, parameter draw, decode at full size / reduced where the crops allow);
* ``dev bytes``: the same with ``decode_on="device"`` (header, draw, the file's bytes: the JPEG is decoded
  later, on the GPU);
* ``coll L`` / ``coll D``: ``collate_views`` of a batch, per sample, for the loader / device samples;
* ``D/L``: (dev full + coll D) / (loader + coll L), and ``D/L red`` with the reduced decode;
* device side: ``transform.device_views(batch)`` ms per ``--batch`` batch on ``--device`` (CPU: CPU
  time of one thread; CUDA: wall time after a synchronize).

The demo photos' long side is at most 512, so at 224 a crop seldom allows a 1/2 decode: reduced decode
rarely changes anything here; on full-size photos (ImageNet, COCO) it does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ("byol", "soco", "soco_star", "soco_c4", "slotcon", "univip", "orl")


def _ms_per_sample(dataset, n: int) -> tuple[float, list]:
    """(CPU ms per ``dataset[(i, i)]`` over ``n`` calls after one warm-up, the samples)."""
    dataset[(0, 0)]
    c0 = time.thread_time()
    samples = [dataset[(i % len(dataset), i)] for i in range(n)]
    return (time.thread_time() - c0) * 1e3 / n, samples


def _collate_ms(collate, samples: list) -> float:
    c0 = time.thread_time()
    collate(samples)
    return (time.thread_time() - c0) * 1e3 / len(samples)


def _device_ms(device_views, batch, device: str, dtype: torch.dtype, repeats: int) -> float:
    """ms per call of ``device_views`` on a collated batch moved to ``device``."""
    from objssl.engine.setup import to_device

    batch = to_device(batch, torch.device(device), False)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter if device == "cuda" else time.thread_time
    device_views(batch, dtype)  # warm-up
    sync()
    t0 = clock()
    for _ in range(repeats):
        device_views(batch, dtype)
    sync()
    return (clock() - t0) * 1e3 / repeats


def measure_method(name: str, paths: list[str], cache: str, args) -> dict[str, float]:
    from objssl.data.collate import collate_views
    from objssl.data.dataset import ImageDataset
    from objssl.methods import method_transform

    method_cfg = {"name": name, "image_size": args.image_size}
    make = {where: method_transform(method_cfg, {"augment_on": where, "proposals": cache}) for where in ("loader", "device")}
    r: dict[str, float] = {}
    r["loader"], samples = _ms_per_sample(ImageDataset(paths, make["loader"]), args.samples)
    r["coll_l"] = _collate_ms(collate_views, samples)
    r["dev_full"], samples = _ms_per_sample(ImageDataset(paths, make["device"], reduced_decode=False), args.samples)
    r["coll_d"] = _collate_ms(collate_views, samples)
    r["dev_red"], _ = _ms_per_sample(ImageDataset(paths, make["device"], reduced_decode=True), args.samples)
    r["dev_bytes"], _ = _ms_per_sample(ImageDataset(paths, make["device"], decode_on="device"), args.samples)
    base = r["loader"] + r["coll_l"]
    r["ratio"] = (r["dev_full"] + r["coll_d"]) / base
    r["ratio_red"] = (r["dev_red"] + r["coll_d"]) / base

    # one device-mode batch of --batch samples (the photos repeated), as the loader sends it
    full = ImageDataset(paths, make["device"], reduced_decode=False)
    batch = collate_views([full[(i % len(full), i)] for i in range(args.batch)])
    dtype = torch.bfloat16 if (args.bf16 and args.device == "cuda") else torch.float32
    r["device_ms"] = _device_ms(make["device"].device_views, batch, args.device, dtype, args.repeats)
    return r


def per_method(args) -> None:
    from objssl.cli import main as cli
    from objssl.data import demo_images

    torch.set_num_threads(1)
    paths = demo_images()
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "proposals")
        if cli(["proposals", "--source", "random", "--out", cache, "--no-progress"]) != 0:
            raise SystemExit("building the random-proposal cache failed")
        results = {}
        for m in args.methods.split(","):
            if m == "orl":  # stage 3: its dataset pairs each image with a neighbour (bench.data_orl_rows)
                from bench.data_orl_rows import measure_orl, write_demo_stage2

                stage2 = write_demo_stage2(os.path.join(tmp, "stage2"), paths)
                results[m] = measure_orl(paths, stage2, args, _ms_per_sample, _collate_ms, _device_ms)
            else:
                results[m] = measure_method(m, paths, cache, args)
    load = os.getloadavg()
    print(f"views at {args.image_size}, {len(paths)} demo photos (long side <= 512), one thread, "
          f"{args.samples} samples per row, proposals: random cache; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("loader side, CPU ms/sample (thread time)")
    cols = ("loader", "coll_l", "dev_full", "dev_red", "dev_bytes", "coll_d")
    heads = ("loader", "coll L", "dev full", "dev red", "dev bytes", "coll D", "D/L", "D/L red")
    print(f"{'method':<11}" + "".join(f"{h:>10}" for h in heads))
    for m, r in results.items():
        print(f"{m:<11}" + "".join(f"{r[c]:>10.2f}" for c in cols)
              + f"{100 * r['ratio']:>9.1f}%{100 * r['ratio_red']:>9.1f}%")
    dtype = "bf16" if (args.bf16 and args.device == "cuda") else "fp32"
    clock = "CPU time, one thread" if args.device == "cpu" else "wall time"
    print(f"\ndevice side: device_views(batch) on {args.device} {dtype}, batch {args.batch} ({clock})")
    print(f"{'method':<11}{'ms/batch':>10}{'ms/sample':>10}")
    for m, r in results.items():
        print(f"{m:<11}{r['device_ms']:>10.1f}{r['device_ms'] / args.batch:>10.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    p.add_argument("--samples", type=int, default=40, help="samples per loader-side row")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 64; --end-to-end: 256)")
    p.add_argument("--image-size", type=int, default=224, help="method.image_size")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="device side (default cpu; --end-to-end: cuda when present)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 pixels for the device side on CUDA")
    p.add_argument("--repeats", type=int, default=3, help="timed device-side batches")
    p.add_argument("--end-to-end", action="store_true", help="training-step throughput fed by loader workers")
    p.add_argument("--backbone", default="resnet50", help="--end-to-end: backbone")
    p.add_argument("--workers", default="2,4,8", help="--end-to-end: comma-separated loader worker counts")
    p.add_argument("--steps", type=int, default=20, help="--end-to-end: timed steps per row")
    p.add_argument("--warmup", type=int, default=None,
                   help="--end-to-end: untimed steps first (default 4 * workers + 2: the loader's prefetch queue drained)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.end_to_end:
        from bench.data_end_to_end import run

        run(args)
    else:
        args.batch = args.batch or 64
        args.device = args.device or "cpu"
        per_method(args)


if __name__ == "__main__":
    main()
