"""``objssl data SUBCOMMAND``: tools that make data sets. ``objssl data scenes`` composes a
scene benchmark, ``objssl data shard`` writes WebDataset tar shards.

Each subcommand is a pair of functions, ``_add_<name>(subparsers)`` that registers it on the
``data`` subparser and ``run_<name>(args)`` that runs it; :data:`SUBCOMMANDS` lists the first.
"""

from __future__ import annotations

import argparse


def _add_scenes(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scenes",
        help="compose a multi-object scene benchmark from RGBA cut-outs and photos",
        description="Paste RGBA object cut-outs at random scales and positions (later ones occlude "
        "earlier ones) onto random crops of real photos, and write OUT/images (unlabeled, for "
        "pretraining), OUT/annotations.json (COCO boxes + RLE masks), OUT/voc (VOC multi-label "
        "root for eval svm), OUT/crops/{train,val} (ImageFolder for eval knn/linear) and "
        "OUT/semseg (class-index PNGs). The same arguments give byte-identical files. "
        "See docs/scenes.md.",
    )
    p.add_argument("--out", required=True, help="benchmark folder to create (must not exist or be empty)")
    p.add_argument("--n", type=int, default=2000, help="number of scenes (default 2000)")
    p.add_argument("--size", type=int, default=256, help="scene side in pixels (default 256)")
    p.add_argument("--objects", metavar="DIR",
                   help="folder of cut-out categories: a depth-1 folder holding images is a "
                        "category; a depth-1 folder without images groups depth-2 category folders "
                        "(default: 15 folders of /usr/share/tuxpaint/stamps, Debian package "
                        "tuxpaint-stamps-default)")
    p.add_argument("--backgrounds", metavar="DIR", action="append", default=[],
                   help="folder of photos added to the bundled demo photos (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-objects", type=int, default=2, help="fewest objects per scene (default 2)")
    p.add_argument("--max-objects", type=int, default=6, help="most objects per scene (default 6)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_scenes)


def run_scenes(args: argparse.Namespace) -> int:
    from objssl.data.scenes import build_scenes

    summary = build_scenes(
        args.out, n=args.n, size=args.size, objects=args.objects, backgrounds=args.backgrounds,
        seed=args.seed, min_objects=args.min_objects, max_objects=args.max_objects,
        progress=not args.no_progress,
    )
    print(f"scene benchmark {summary.out}: {summary}")
    if summary.dropped_crop_classes:
        print("classes without crops in both train and val (left out of crops/): "
              + ", ".join(summary.dropped_crop_classes))
    return 0


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
SUBCOMMANDS = (_add_scenes, _add_shard)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="make data sets (scene benchmark, tar shards)",
                              description="Tools that make data sets.")
    data_subparsers = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for register in SUBCOMMANDS:
        register(data_subparsers)
    p.set_defaults(func=lambda args: p.print_help() or 1)
