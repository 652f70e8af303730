"""CPU cost of making views in the loader vs drawing their parameters for the device, and the
device-side cost of a batch, for BYOL's two views.

    python bench/data_throughput.py [--samples 60] [--batch 64] [--size 224] [--device auto|cpu|cuda]
                                    [--bf16] [--repeats 5]

Prints one table:

* loader path: ``load_rgb`` + the BYOL method's transform (``MultiViewTransform`` of
  ``BYOL_VIEWS``), each sample seeded as ``ImageDataset`` seeds it; CPU ms per sample of this
  thread (``time.thread_time``, so other processes' load does not count) and wall ms;
* device path, loader side: ``load_rgb`` + ``pil_to_tensor`` + the per-sample parameter draw
  (:func:`objssl.data.device.draw_image_views`) + their tensors, and the padding of a batch
  (:func:`objssl.data.device.pad_images`, per sample);
* device path, device side: ms per batch of ``--batch`` for both views
  (:func:`objssl.data.device.apply_views`), with ``roi_align`` and with ``per_sample`` resizing, on
  the CPU (one thread, CPU time) and on CUDA when present (wall time; ``--bf16``: bfloat16 pixels).

Images are objssl's demo photos (long side 512). One thread throughout, as in a loader worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _per_sample(fn, n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``fn(i)`` over ``n`` calls."""
    fn(0)  # warm-up
    c0, w0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.thread_time() - c0) * 1e3 / n, (time.perf_counter() - w0) * 1e3 / n


def main() -> None:
    from torchvision.transforms.v2 import functional as TF

    from objssl.data import demo_images, load_rgb
    from objssl.data.dataset import seeded
    from objssl.data.device import DeviceView, ViewBatch, apply_views, draw_image_views, pad_images
    from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform, ViewAugmentation

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=60, help="samples per loader-side measurement")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224, help="view side")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bf16", action="store_true", help="bfloat16 pixels on CUDA")
    p.add_argument("--repeats", type=int, default=5, help="timed device-side batches")
    args = p.parse_args()

    torch.set_num_threads(1)
    paths = demo_images()
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


if __name__ == "__main__":
    main()
