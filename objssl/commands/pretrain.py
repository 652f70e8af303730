"""``objssl pretrain [--config FILE] [--method M] [--backbone B] [--data PATH] ... [key=value ...]``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining (runs on the bundled demo photos without --data)",
        description="Pretrain a backbone. Options override the config file; key=value pairs "
        "(e.g. optim.lr=0.3 train.precision=bf16) override anything.",
    )
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--method", help="method name (objssl list methods)")
    p.add_argument("--backbone", help="any timm model name")
    p.add_argument("--data", help="image folder, list file or COCO json (default: bundled demo photos)")
    p.add_argument("--out", help="output folder (checkpoints, logs, TensorBoard)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int)
    g.add_argument("--max-steps", type=int, help="optimizer steps to run (the schedule spans them)")
    p.add_argument("--batch-size", type=int, help="global batch size per optimizer step")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="resume from the newest checkpoint in --out (or from CKPT)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> dict:
    from objssl.config import apply_overrides, load_config

    cfg = load_config(args.config)
    flags = {
        "method.name": args.method, "backbone.name": args.backbone, "data.path": args.data,
        "train.out": args.out, "train.epochs": args.epochs, "train.max_steps": args.max_steps,
        "train.batch_size": args.batch_size, "data.num_workers": args.workers,
    }
    pairs = []
    for key, value in flags.items():
        if value is not None:
            pairs.append(f"{key}={value}")
    if args.epochs is not None:
        pairs.append("train.max_steps=null")
    cfg = apply_overrides(cfg, pairs)
    if args.method and args.config is None:
        cfg["method"] = {"name": args.method}
    return apply_overrides(cfg, args.overrides)


def run(args: argparse.Namespace) -> int:
    import objssl  # noqa: F401 - registers the built-in parts
    from objssl.engine import Trainer

    cfg = build_config(args)
    trainer = Trainer(cfg, resume=args.resume)
    summary = trainer.fit()
    print(f"done: step {summary['step']}/{summary['total_steps']}, loss {summary['loss']:.4f}, "
          f"images skipped {summary['images_skipped']}, non-finite steps {summary['nonfinite_total']}; "
          f"output in {summary['out']}")
    return 0
