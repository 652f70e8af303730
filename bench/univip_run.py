"""A short UniVIP training run on the demo photos: per-term loss and gradient-norm curves (a benchmark,
not a test: it asserts nothing; it reports whether every loss and gradient norm stayed finite).

    python bench/univip_run.py [--backbone test_resnet] [--steps 300] [--batch 8] [--size 64]
                               [--instance-size 32] [--out runs/bench_univip]

Proposals: a ``random``-source cache of the demo photos (built once under ``--out``). The loop is the
trainer's step reduced to its core (forward, backward, SGD step, EMA update), so the gradient norm of
every step can be recorded; the PNG has one curve per loss term and the total gradient norm.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

TERMS = ("loss", "loss_byol_global", "loss_univip_scene_instance", "loss_univip_instance_ot")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="test_resnet")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--instance-size", type=int, default=32)
    p.add_argument("--dim", type=int, default=64, help="projector/predictor width (hidden = 4x)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--out", default="runs/bench_univip")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import objssl  # noqa: F401 - registers the methods
    from objssl.backbones import create_backbone
    from objssl.data import demo_images
    from objssl.methods import create_method
    from objssl.proposals import RandomSource, build_cache

    os.makedirs(args.out, exist_ok=True)
    paths = demo_images()
    cache_dir = os.path.join(args.out, "proposals")
    if not os.path.exists(os.path.join(cache_dir, "meta.json")):
        build_cache(RandomSource(), paths, cache_dir)
    torch.manual_seed(0)
    cfg = dict(image_size=args.size, instance_size=args.instance_size, proj_dim=args.dim,
               proj_hidden_dim=4 * args.dim, pred_hidden_dim=4 * args.dim)
    method = create_method("univip", create_backbone(args.backbone), **cfg)
    data_cfg = {"proposals": cache_dir, "min_side": 32}
    dataset = method.build_dataset(paths, {"data": data_cfg})
    params = [q for q in method.parameters() if q.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    history: dict[str, list[float]] = {k: [] for k in (*TERMS, "grad_norm")}
    counters: dict[str, int] = {}
    start = time.perf_counter()
    for step in range(args.steps):
        idx = [(step * args.batch + i) % len(paths) for i in range(args.batch)]
        batch = method.collate_fn([dataset[(i, step * 1000 + j)] for j, i in enumerate(idx)])
        for key, value in batch["counters"].items():
            counters[key] = counters.get(key, 0) + int(value)
        out = method(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        optimizer.step()
        method.update_target(step, args.steps)
        for k in TERMS:
            history[k].append(float(out[k].detach()))
        history["grad_norm"].append(float(grad_norm))
    seconds = time.perf_counter() - start

    finite = {k: all(math.isfinite(v) for v in vs) for k, vs in history.items()}
    summary = {
        "steps": args.steps, "batch": args.batch, "backbone": args.backbone, "seconds": round(seconds, 1),
        "all_finite": all(finite.values()), "finite": finite, "counters": counters,
        **{f"{k}_first": round(v[0], 4) for k, v in history.items()},
        **{f"{k}_last10_mean": round(sum(v[-10:]) / len(v[-10:]), 4) for k, v in history.items()},
        "grad_norm_max": round(max(history["grad_norm"]), 4),
    }
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump({"summary": summary, "history": history}, f)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 5, figsize=(22, 3.5))
        for ax, key in zip(axes, (*TERMS, "grad_norm")):
            ax.plot(history[key])
            ax.set_title(key)
            ax.set_xlabel("step")
        fig.tight_layout()
        png = os.path.join(args.out, "univip_curves.png")
        fig.savefig(png, dpi=80)
        summary["png"] = png
    except ImportError:
        summary["png"] = "matplotlib not installed"
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
