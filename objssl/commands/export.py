"""``objssl export CHECKPOINT --to {timm,detectron2,mmseg} -o OUT [--which teacher|student]``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint's weights for timm, detectron2 or mmseg")
    p.add_argument("checkpoint", help="an objssl checkpoint (OUT/checkpoints/step_*.pth)")
    p.add_argument("--to", required=True, help="target framework (objssl list exporters)")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.add_argument("--which", default="teacher", choices=("teacher", "student"),
                   help="EMA teacher (default, as the official code exports) or online student")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="exporter option, e.g. --opt layout=c4 --opt norm=FrozenBN (detectron2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import objssl  # noqa: F401 - registers the built-in exporters
    from objssl.checkpoint import load_checkpoint
    from objssl.registry import EXPORTERS

    from objssl.commands._options import parse_key_values
    from objssl.errors import UserError

    opts = parse_key_values(args.opt, "--opt")
    exporter = EXPORTERS.get(args.to)
    ckpt = load_checkpoint(args.checkpoint)
    try:
        report = exporter(ckpt, args.output, which=args.which, **opts)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise UserError(f"--to {args.to}: {exc}") from None
        raise
    print(f"exported the {args.which} of {args.checkpoint} to {args.output} ({args.to})")
    print(report.summary())
    return 0
