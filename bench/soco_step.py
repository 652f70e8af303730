"""SoCo step time against a bare backbone forward+backward of the same views, and the data cost per sample.

    python bench/soco_step.py [--backbone resnet18] [--batch 16] [--size 224] [--iters 5] [key=value ...]

For each of SoCo (3 views), SoCo* (4 views) and SoCo-C4 (2 views), in one run on the same machine:

* ``bare``: ``timm.create_model(backbone)`` forward + backward of all the method's views;
* ``objssl``: one full training step (online backbone + FPN + RoIAlign + box head + projector +
  predictor on every view, target pass on every view, loss, LARS, EMA), through the trainer;
* ``data``: CPU milliseconds per sample of the data pipeline (decode + box-aware views + proposal
  lookup in a cache), one thread as in a loader worker.

CPU always (fp32); on a GPU also bf16 with channels_last. The measuring code is shared with
``bench/step_overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from step_overhead import measure  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--methods", default="soco,soco_star,soco_c4")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"backbone={args.backbone} batch={args.batch} size={args.size} iters={args.iters} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} {' '.join(args.overrides)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for method in args.methods.split(","):
        for d in devices:
            r = measure(args.backbone, args.batch, args.size, args.iters, d, method, tuple(args.overrides))
            label = "cpu fp32" if d == "cpu" else "gpu bf16 channels_last"
            print(f"{method:>10} {label:>22}: bare fwd+bwd of its views {r['bare_ms']:8.1f} ms | step "
                  f"{r['objssl_ms']:8.1f} ms | ratio {r['ratio']:.2f} | data {r['loader_ms']:.1f} ms/sample")


if __name__ == "__main__":
    main()
