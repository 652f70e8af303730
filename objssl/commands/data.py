"""``objssl data SUBCOMMAND``: tools that make data sets. ``objssl data shard`` writes WebDataset tar shards.

Each subcommand is a pair of functions, ``_add_<name>(subparsers)`` that registers it on the
``data`` subparser and ``run_<name>(args)`` that runs it; :data:`SUBCOMMANDS` lists the first.
"""

from __future__ import annotations

import argparse


def _add_shard(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "shard",
        help="pack an image folder or a COCO json's images into WebDataset tar shards",
        description="Write the images of SOURCE (a folder, sorted; a COCO json, in its order; or a "
        "list file) into OUT/<prefix>-000000.tar, ... with --shard-size images each, keys %%08d, "
        "the file bytes unchanged; plus OUT/<prefix>.txt (the shard list, usable as --data / "
        "data.path) and OUT/<prefix>-sources.tsv (key -> source file). The same input gives "
        "identical shards. See docs/data.md.",
    )
    p.add_argument("source", metavar="FOLDER|COCO_JSON", help="images to pack")
    p.add_argument("--out", required=True, help="folder to write the shards into")
    p.add_argument("--shard-size", type=int, default=10000, help="images per shard (default 10000)")
    p.add_argument("--prefix", default="train", help="shard file name prefix (default train)")
    p.add_argument("--images-root", default=None,
                   help="folder a COCO json's file_names (or a list file's entries) are relative to "
                        "(default: found next to the json, as data.image_root)")
    p.set_defaults(func=run_shard)


def run_shard(args: argparse.Namespace) -> int:
    import os

    from objssl.images.shard_writer import write_shards
    from objssl.images.sources import list_images

    paths = list_images(args.source, image_root=args.images_root)
    root = args.images_root or (args.source if os.path.isdir(args.source) else os.path.dirname(args.source))
    summary = write_shards(paths, args.out, shard_size=args.shard_size, prefix=args.prefix,
                           root=os.path.abspath(root))
    print(f"{summary.images} images in {len(summary.shards)} shards under {args.out} "
          f"({summary.bytes / 1e6:.1f} MB); shard list {summary.list_file}")
    return 0


#: the registration function of every ``objssl data`` subcommand
SUBCOMMANDS = (_add_shard,)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="make data sets (tar shards)",
                              description="Tools that make data sets.")
    data_subparsers = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for register in SUBCOMMANDS:
        register(data_subparsers)
    p.set_defaults(func=lambda args: p.print_help() or 1)
