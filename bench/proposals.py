"""Proposal throughput, cache size and the CPU cost of the box-aware view sampler, in one run.

    python bench/proposals.py [--source selective_search] [--param mode=fast] [--workers 2]
                              [--max-side 500] [--images 18] [--samples 50]

Prints:

* images/s of the proposal source through ``objssl.proposals.build_cache`` with 1 worker and with
  ``--workers`` processes (the same images; the ratio is the parallel speed-up);
* bytes per image of the resulting cache (shards + index) and boxes per image;
* milliseconds of CPU per sample of :class:`objssl.data.views.BoxAwareViews` for every preset, at the
  presets' full view sizes, with boxes read from that cache (one thread, as in a loader worker).

Images are the demo photos, repeated to ``--images``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    from objssl.commands._options import parse_key_values
    from objssl.data import demo_images, load_rgb
    from objssl.data.views import VIEW_PRESETS, BoxAwareViews
    from objssl.proposals import ProposalCache, build_cache, create_source
    from objssl.registry import PROPOSALS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="selective_search" if "selective_search" in PROPOSALS else "random")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--max-side", type=int, default=500)
    p.add_argument("--images", type=int, default=18)
    p.add_argument("--samples", type=int, default=50, help="view-sampler samples per preset")
    args = p.parse_args()

    torch.set_num_threads(1)
    source = create_source(args.source, **parse_key_values(args.param, "--param"))
    base = demo_images()
    with tempfile.TemporaryDirectory() as tmp:
        # distinct file names: the cache keys images by path
        paths = []
        for i in range(args.images):
            src = base[i % len(base)]
            dst = os.path.join(tmp, "images", f"{i:04d}_{os.path.basename(src)}")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(src, dst)
            paths.append(dst)
        print(f"source {source.cache_key()} {source.params()}, {len(paths)} images, max side {args.max_side}")
        rates = {}
        for workers in sorted({1, args.workers}):
            out = os.path.join(tmp, f"cache_w{workers}")
            t0 = time.perf_counter()
            s = build_cache(source, paths, out, workers=workers, max_side=args.max_side, progress=False)
            wall = time.perf_counter() - t0
            rates[workers] = len(paths) / wall
            print(f"  workers={workers}: {rates[workers]:.2f} images/s (wall, incl. worker start-up), "
                  f"{s.boxes_per_image:.0f} boxes/image, {s.zero_box_images} with zero boxes")
        if len(rates) > 1:
            print(f"  speed-up with {args.workers} workers: {rates[args.workers] / rates[1]:.2f}x")
        cache_dir = os.path.join(tmp, "cache_w1")
        size = sum(os.path.getsize(os.path.join(cache_dir, n)) for n in os.listdir(cache_dir) if n.endswith(".npy"))
        print(f"  cache: {size / len(paths):.0f} bytes/image (int16 boxes + index), "
              f"{size / len(paths) / max(s.boxes_per_image, 1):.1f} bytes/box")

        cache = ProposalCache(cache_dir)
        images = [(load_rgb(p), {"index": i, "path": p}) for i, p in enumerate(paths[: len(base)])]
        print(f"view sampler, CPU ms/sample (1 thread, {args.samples} samples, full sizes):")
        from objssl.data.transforms import BYOL_VIEWS, MultiViewTransform

        plain = MultiViewTransform.from_augmentations(BYOL_VIEWS)  # baseline: v2 views without boxes
        torch.manual_seed(0)
        t0 = time.process_time()
        for i in range(args.samples):
            plain(images[i % len(images)][0])
        base_ms = (time.process_time() - t0) / args.samples * 1000
        print(f"  {'baseline':<10} views 224/224          plain transforms.v2 BYOL views: {base_ms:6.1f} ms")
        for name in sorted(VIEW_PRESETS):
            views = BoxAwareViews.from_preset(name, proposals=cache)
            torch.manual_seed(0)
            for img, meta in images[:2]:  # warm-up
                views(img, meta)
            t0 = time.process_time()
            for i in range(args.samples):
                img, meta = images[i % len(images)]
                views(img, meta)
            ms = (time.process_time() - t0) / args.samples * 1000
            sizes = "/".join(str(v.hw[0]) for v in views.views)
            events = {k: v for k, v in views.stats.items() if k != "samples" and v}
            print(f"  {name:<10} views {sizes:<16} k={views.k}: {ms:6.1f} ms  ({ms / base_ms:.2f}x baseline)  "
                  f"events {events or '-'}")


if __name__ == "__main__":
    main()
