"""``objssl proposals --source NAME --data PATH --out CACHE [--workers N] [--max-side S] [--param K=V] [--import MODULE]
[--num-shards N --shard-index I]`` and ``objssl proposals merge PARTS... --out CACHE``."""

from __future__ import annotations

import argparse

PARAM_HELP = (
    "source parameter KEY=VALUE, repeatable; VALUE is read as YAML: 100 is an int, 0.5 a float, "
    "[100, 300] a list, null None, true/false booleans (so are yes/no/on/off), anything else a "
    "string; quote to keep a string, e.g. --param \"tag='yes'\". Unknown KEYs are refused with the "
    "source's parameter names. Example: --param mode=quality --param max_boxes=200"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "proposals",
        help="compute region proposals for a data set into a compact, resumable cache",
        description="Run a proposal source (objssl list proposals) over every image and write a "
        "proposal cache folder. Rerunning with the same arguments resumes: finished shards are "
        "skipped, corrupt files recomputed; rerunning on a superset of the images adds the new "
        "ones. Methods read the cache with data.proposals=CACHE. A cluster builds one part per task "
        "with --num-shards N --shard-index I; `objssl proposals merge PARTS... --out CACHE` then "
        "merges them (see docs/data.md).",
    )
    p.add_argument("--source", help="proposal source, e.g. selective_search, random (required)")
    p.add_argument("--data", help="image folder, list file or COCO json (default: bundled demo photos)")
    p.add_argument("--out", help="cache folder to write (required); with --num-shards, the folder "
                                 "that gets the part folder part-0000I-of-0000N")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--max-side", type=int, default=None,
                   help="resize so the longer side is at most S before proposing (boxes are "
                        "scaled back to original pixels)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help=PARAM_HELP)
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, in this process and in every worker (repeatable): a "
                        "module that registers a proposal source in objssl.registry.PROPOSALS")
    p.add_argument("--shard-size", type=int, default=1000, help="images per shard (unit of resumption)")
    p.add_argument("--fallback", choices=("random", "none"), default="random",
                   help="boxes for images where the source finds none (default: random boxes)")
    p.add_argument("--num-shards", type=int, default=None, metavar="N",
                   help="build only one of N parts (whole cache shards, contiguous in the image "
                        "list), e.g. one per task of a cluster array job; merge them with "
                        "`objssl proposals merge`")
    p.add_argument("--shard-index", type=int, default=None, metavar="I",
                   help="which part to build, 0..N-1 (with --num-shards)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="proposals_command", metavar="merge")
    m = sub.add_parser("merge", help="merge the parts of a sharded build into one cache",
                       description="Merge the part folders of a build run with --num-shards N into one "
                       "cache, the same files a serial build writes. Every part is verified; a "
                       "missing, repeated or corrupt part is named.")
    m.add_argument("parts", nargs="+", metavar="PARTS",
                   help="part folders, or a folder holding the part-*-of-* folders")
    m.add_argument("--out", required=True, help="cache folder to write")
    m.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from objssl.proposals.parts import merge_parts

    summary = merge_parts(args.parts, args.out)
    print(f"proposal cache {args.out}: merged {summary.images} images in {summary.shards_reused} shards; "
          f"{summary.boxes_per_image:.1f} boxes/image; {summary.zero_box_images} images with zero "
          f"boxes; {summary.unreadable_images} unreadable")
    return 0


def _import_modules(modules: list[str]) -> None:
    import importlib

    from objssl.errors import UserError

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure inside the user's module
            raise UserError(f"--import {module}: {type(exc).__name__}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from objssl.commands._options import parse_key_values
    from objssl.data import demo_images
    from objssl.errors import UserError
    from objssl.images.sources import list_images
    from objssl.proposals import build_cache, create_source
    from objssl.proposals.parts import build_part

    for flag, value in (("--source", args.source), ("--out", args.out)):
        if value is None:
            raise UserError(f"{flag} is required")
    if (args.num_shards is None) != (args.shard_index is None):
        raise UserError("--num-shards and --shard-index go together")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    _import_modules(args.imports)
    params = parse_key_values(args.param, "--param")
    try:
        source = create_source(args.source, **params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--source {args.source}: {exc}") from None
    paths = list_images(args.data) if args.data else demo_images()
    options = dict(workers=args.workers, max_side=args.max_side, shard_size=args.shard_size,
                   fallback=args.fallback, progress=not args.no_progress, imports=args.imports)
    out = args.out
    try:
        if args.num_shards is None:
            summary = build_cache(source, paths, out, **options)
        else:
            out, summary = build_part(source, paths, out, count=args.num_shards, index=args.shard_index,
                                      **options)
    except ValueError as exc:  # parameter checks of build_cache
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc)) from None
    print(f"proposal cache {out} ({source.cache_key()}): {summary}")
    if summary.unreadable_images:
        print(f"unreadable images (stored without boxes), e.g. {', '.join(summary.unreadable_examples)}")
    return 0
