"""A composed method's step against the sum of its terms' steps run as separate methods.

    python bench/compose_step.py [--backbone resnet18] [--batch 16] [--size 128] [--iters 5]

For each composition (default: ``soco_boxes + slotcon_slots`` on SoCo's views, and ``byol_global +
slotcon_pixel + slotcon_slots`` on SlotCon's views), in one run on the same machine and batch size:

* ``composed``: one training step of ``compose`` with all the terms (each view through each branch's
  backbone once, shared by every term);
* ``parts``: one training step of ``compose`` with each term alone on the same views, summed — what
  running the methods separately would cost per step.

``composed / parts`` below 1 is the saving of the shared backbone pass. The step is measured by
``bench/step_overhead.py``'s code (a full trainer optimizer step on a real batch of the views).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from step_overhead import measure  # noqa: E402

COMPOSITIONS = {
    "soco_boxes+slotcon_slots": ("soco", ["soco_boxes", "slotcon_slots"]),
    "byol_global+slotcon_pixel+slotcon_slots": ("slotcon", ["byol_global", "slotcon_pixel", "slotcon_slots"]),
}


def _step_ms(args: argparse.Namespace, views: str, terms: list[str], device: str) -> tuple[float, float]:
    objectives = "[" + ", ".join("{name: %s}" % t for t in terms) + "]"
    r = measure(args.backbone, args.batch, args.size, args.iters, device, "compose",
                (f"method.views={views}", f"method.objectives={objectives}", *args.overrides))
    return r["objssl_ms"], r["bare_ms"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--compositions", default=",".join(COMPOSITIONS), help="comma-separated keys of COMPOSITIONS")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"backbone={args.backbone} batch={args.batch} size={args.size} iters={args.iters} "
          f"torch={torch.__version__} threads={torch.get_num_threads()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for key in args.compositions.split(","):
        views, terms = COMPOSITIONS[key]
        for d in devices:
            composed, bare = _step_ms(args, views, terms, d)
            parts = {t: _step_ms(args, views, [t], d)[0] for t in terms}
            label = "cpu fp32" if d == "cpu" else "gpu bf16 channels_last"
            total = sum(parts.values())
            shown = " + ".join(f"{t} {ms:.0f}" for t, ms in parts.items())
            print(f"{key} ({views} views) {label}: composed {composed:.0f} ms | parts {shown} = {total:.0f} ms | "
                  f"composed/parts {composed / total:.2f} | bare fwd+bwd of the views {bare:.0f} ms")


if __name__ == "__main__":
    main()
