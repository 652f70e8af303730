"""``objssl pretrain [--config FILE] [--method M] [--backbone B] [--data PATH] ... [key=value ...]``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from objssl.errors import UserError

#: exit status of a run stopped by SIGTERM/SIGINT after writing its checkpoint (see objssl.cli)
EXIT_STOPPED = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining (runs on the bundled demo photos without --data)",
        description="Pretrain a backbone. Options override the config file; key=value pairs "
        "(e.g. optim.lr=0.3 train.precision=bf16), anywhere on the line, override anything. "
        "Exit status: 0 done, 2 error (one line), 3 stopped by SIGTERM/SIGINT after a checkpoint "
        "(continue with --resume).",
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
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest good checkpoint")
    r.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint file")
    r.add_argument("--overwrite", action="store_true",
                   help="start fresh even if --out holds a run (it is moved to OUT.old-<time>)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module (name or .py file) first, e.g. one that registers a method; repeatable")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def import_user_modules(names: list[str]) -> None:
    """Import each ``--import`` module (a dotted name, found from the current folder too, or a .py file)."""
    for name in names:
        try:
            if name.endswith(".py") or os.sep in name:
                path = os.path.abspath(name)
                if not os.path.isfile(path):
                    raise UserError(f"--import {name}: no such file")
                module_name = os.path.splitext(os.path.basename(path))[0]
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            else:
                if os.getcwd() not in sys.path and "" not in sys.path:
                    sys.path.insert(0, os.getcwd())
                importlib.import_module(name)
        except UserError:
            raise
        except Exception as exc:  # whatever the user's module raises
            raise UserError(f"--import {name}: {type(exc).__name__}: {exc}") from exc


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

    import_user_modules(args.imports)
    cfg = build_config(args)
    resume = args.resume_from or args.resume
    trainer = Trainer(cfg, resume=resume, overwrite=args.overwrite)
    summary = trainer.fit()
    counts = "".join(f", {k} {v}" for k, v in summary["counters"].items())
    if summary["stopped"]:
        print(f"stopped at step {summary['step']}/{summary['total_steps']}; continue with --resume "
              f"(output in {summary['out']})", flush=True)
        return EXIT_STOPPED
    print(f"done: step {summary['step']}/{summary['total_steps']}, loss {summary['loss']:.4f}, "
          f"images skipped {summary['images_skipped']}, non-finite steps {summary['nonfinite_total']}{counts}; "
          f"output in {summary['out']}")
    return 0
