"""SoCo's proposals and box sets on real photos: selective search ``single`` vs ``fast``, and the
whole-view fallback rate of ``box_sets: per_pair`` vs ``shared``.

    python bench/soco_recipe.py [--epochs 20] [--max-side 500]

Photos: the demo photos plus the colour photos that ship inside scikit-image (``skimage/data``,
nothing downloaded), when scikit-image is installed.

Prints, per selective-search setting (``fast`` and ``single`` at ``--max-side`` and at full
resolution): boxes per image (raw, and after SoCo's ``ratio3size0308post`` filter) and images/s on
one thread (fast mode at full resolution only with ``--fast-full``: minutes per large photo). Then,
with the ``single`` full-resolution boxes, the SoCo and SoCo* views at 224 for
``--epochs`` passes over the photos: per 100 samples, how often a box set fell back to the whole shared
region (``views/fallback_whole``; per pair for ``per_pair``, so also per 100 pairs), how often the
tries ran out, and the mean number of distinct proposals per set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SKIMAGE_PHOTOS = ("motorcycle_left.png", "motorcycle_right.png", "coins.png", "retina.jpg", "ihc.png",
                  "brick.png", "grass.png", "gravel.png", "moon.png")


def photos() -> list[tuple[str, np.ndarray]]:
    from objssl.data import demo_images, load_rgb

    out = [(os.path.basename(p), np.array(load_rgb(p))) for p in demo_images()]
    try:
        import skimage
    except ImportError:
        return out
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    for name in SKIMAGE_PHOTOS:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            out.append((name, np.array(load_rgb(path))))
    return out


def main() -> None:
    from objssl.data.views import STAT_KEYS, BoxAwareViews
    from objssl.proposals.filters import soco_filter
    from objssl_selective_search import SelectiveSearch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-side", type=int, default=500)
    p.add_argument("--fast-full", action="store_true", help="also fast mode at full resolution (slow)")
    args = p.parse_args()
    torch.set_num_threads(1)
    images = photos()
    sizes = [im.shape[:2] for _, im in images]
    print(f"{len(images)} photos, {min(min(s) for s in sizes)}..{max(max(s) for s in sizes)} px")
    boxes: dict[str, list[torch.Tensor]] = {}
    settings = [("single", args.max_side), ("single", None), ("fast", args.max_side)]
    if args.fast_full:
        settings.append(("fast", None))
    for mode, side in settings:
        src = SelectiveSearch(mode=mode, max_side=side)
        t = time.perf_counter()
        got = [src(im).boxes for _, im in images]
        dt = time.perf_counter() - t
        kept = [len(soco_filter(b, (im.shape[1], im.shape[0]))) for b, (_, im) in zip(got, images)]
        label = f"{mode} max_side={side}"
        boxes[label] = got
        print(f"{label:26s} boxes/image {np.mean([len(b) for b in got]):7.1f}  after soco_filter "
              f"{np.mean(kept):6.1f}  images/s {len(images) / dt:6.2f}", flush=True)
    props = boxes["single max_side=None"]
    print(f"box sets on the {len(images)} photos with the single full-resolution boxes, {args.epochs} epochs",
          flush=True)
    from PIL import Image

    pil = [Image.fromarray(im) for _, im in images]
    for preset in ("soco", "soco_star"):
        for box_sets in ("shared", "per_pair"):
            views = BoxAwareViews.from_preset(preset, box_sets=box_sets)
            events = torch.zeros(len(STAT_KEYS), dtype=torch.long)
            distinct = []
            torch.manual_seed(0)
            for _ in range(args.epochs):
                for img, b in zip(pil, props):
                    s = views(img, boxes=b)
                    events += s["view_events"]
                    ids = s["box_ids"] if box_sets == "per_pair" else s["box_ids"][None]
                    distinct += [len(set(row.tolist())) for row in ids]
            n = args.epochs * len(pil)
            pairs = len(views.views) - 1 if box_sets == "per_pair" else 1
            rate = {k: 100.0 * int(v) / n for k, v in zip(STAT_KEYS, events)}
            print(f"{preset:9s} {box_sets:8s} fallback_whole {rate['fallback_whole']:5.1f} per 100 samples "
                  f"({rate['fallback_whole'] / pairs:5.1f} per 100 sets)  tries_exhausted "
                  f"{rate['tries_exhausted']:5.1f}  distinct proposals per set {np.mean(distinct):.2f}", flush=True)


if __name__ == "__main__":
    main()
