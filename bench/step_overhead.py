"""Overhead of an objssl training step over a bare timm forward+backward of the same views.

    python bench/step_overhead.py [--method byol|slotcon] [--backbone resnet18] [--batch 16] [--size 128] [--iters 10]

Measured in one run, on the same machine and the same tensors:

* ``bare``: ``timm.create_model(name)`` forward + backward of both views (the cost of the backbone
  alone, what any method pays);
* ``objssl``: one full :class:`objssl.engine.Trainer` optimizer step of the method (BYOL: online
  forward + backward of both views, target forward of both views, heads, LARS step, EMA update;
  SlotCon adds the dense projector, the prototype grouping, the aligned pixel loss and the slot
  contrast). The views are a real batch from the method's own data pipeline.

The ratio is the number to watch: BYOL's own work (a second, gradient-free backbone pass per view,
the heads, the optimizer and the EMA) puts its floor near 1.5; anything well above that is framework
overhead. On a GPU the same is measured in bf16 with channels_last.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time(fn, iters: int, sync) -> list[float]:
    for _ in range(2):  # warm-up
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def measure(
    backbone: str, batch: int, size: int, iters: int, device: str, method: str = "byol", overrides: tuple = ()
) -> dict[str, float]:
    import timm

    from objssl.config import apply_overrides, load_config
    from objssl.engine import Trainer

    dev = torch.device(device)
    gpu = dev.type == "cuda"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else contextlib.nullcontext()
    fmt = torch.channels_last if gpu else torch.contiguous_format
    bare = timm.create_model(backbone, num_classes=0).to(dev).to(memory_format=fmt).train()

    with tempfile.TemporaryDirectory() as out:
        # the trainer needs a data set of at least one batch: link the demo photos enough times
        from objssl.data.demo import demo_images

        data = os.path.join(out, "data")
        os.makedirs(data)
        photos = demo_images()
        for i in range(batch):
            os.symlink(photos[i % len(photos)], os.path.join(data, f"{i:04d}.jpg"))
        cfg = apply_overrides(load_config(), [f"data.path={data}", f"method.name={method}",
            f"backbone.name={backbone}", f"method.image_size={size}", f"train.batch_size={batch}",
            "train.max_steps=1000", f"train.out={out}", "train.progress=false", "train.tensorboard=false",
            f"train.precision={'bf16' if gpu else 'fp32'}", f"train.channels_last={str(gpu).lower()}",
            f"train.device={dev.type}", "data.num_workers=0", *overrides,
        ])
        import objssl  # noqa: F401 - registers the methods
        from objssl.registry import METHODS

        if METHODS.get(cfg["method"]["name"]).needs_proposals(cfg["method"]):  # boxes: a cache over the photos
            from objssl.proposals import RandomSource, build_cache

            build_cache(RandomSource(n=100), [os.path.join(data, n) for n in sorted(os.listdir(data))],
                        os.path.join(out, "proposals"), progress=False)
            cfg["data"]["proposals"] = os.path.join(out, "proposals")
        trainer = Trainer(cfg)
        # one real batch from the method's own pipeline (views, and boxes/overlaps if it has them)
        from torch.utils.data import default_collate

        collate = trainer.collate_fn or default_collate
        t0 = time.process_time()
        samples = [trainer.dataset[(i, i)] for i in range(batch)]
        loader_ms = (time.process_time() - t0) / batch * 1e3  # decode + views, one thread
        batch_dict = collate(samples)
        batch_dict["views"] = [v.to(dev).to(memory_format=fmt) for v in batch_dict["views"]]
        views = batch_dict["views"]  # every view the method sees (SoCo: 3, SoCo*: 4)

        def bare_step():
            with amp:
                loss = sum(bare(v).float().mean() for v in views)
            loss.backward()

        def objssl_step():
            trainer.loop.optimizer_step([batch_dict], trainer.step, trainer.total_steps)
            trainer.step += 1

        t_bare = _time(bare_step, iters, sync)
        t_obj = _time(objssl_step, iters, sync)
    mb, mo = statistics.median(t_bare), statistics.median(t_obj)
    return {"bare_ms": mb * 1e3, "objssl_ms": mo * 1e3, "ratio": mo / mb, "loader_ms": loader_ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="byol", help="byol, slotcon, soco, soco_star, soco_c4")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. method.proj_hidden_dim=512")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"method={args.method} backbone={args.backbone} batch={args.batch} size={args.size} iters={args.iters} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} {' '.join(args.overrides)}")
    for d in devices:
        r = measure(args.backbone, args.batch, args.size, args.iters, d, args.method, tuple(args.overrides))
        label = "cpu fp32" if d == "cpu" else "gpu bf16 channels_last"
        print(f"{label:>24}: bare timm fwd+bwd {r['bare_ms']:8.1f} ms | objssl {args.method} step "
              f"{r['objssl_ms']:8.1f} ms | ratio {r['ratio']:.2f} | data {r['loader_ms']:.1f} ms/sample CPU")


if __name__ == "__main__":
    main()
