"""``objssl viz proposals IMAGE --source NAME -o OUT.png``, ``objssl viz views IMAGE --method NAME -o OUT.png``,
``objssl viz slots CKPT -o OUT.png``, ``objssl viz correspondence OUT/stage2 IMAGE -o OUT.png``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("viz", help="draw proposals or box-aware views into a PNG to look at")
    sub = p.add_subparsers(dest="viz_kind", metavar="WHAT")
    sub.required = True

    pp = sub.add_parser("proposals", help="an image with the boxes of a proposal source")
    pp.add_argument("image", help="image file")
    pp.add_argument("--source", required=True, help="proposal source (objssl list proposals)")
    pp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="source parameter")
    pp.add_argument("--max-side", type=int, default=None, help="resize before proposing (as the cache does)")
    pp.add_argument("--max-boxes", type=int, default=50, help="draw the first N boxes (default 50)")
    pp.add_argument("-o", "--output", required=True, help="PNG to write")
    pp.set_defaults(func=run_proposals)

    pv = sub.add_parser("views", help="a method's views of an image side by side, one colour per box")
    pv.add_argument("image", help="image file")
    pv.add_argument("--method", required=True,
                    help="a method (objssl list methods): its views exactly as it trains with them; "
                    "or a view preset (objssl.data.views.VIEW_PRESETS)")
    pv.add_argument("--source", default=None,
                    help="proposal source for the boxes (default: selective_search if installed, else random)")
    pv.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="source parameter")
    pv.add_argument("--seed", type=int, default=0, help="random seed of the views")
    pv.add_argument("-o", "--output", required=True, help="PNG to write")
    pv.set_defaults(func=run_views)

    ps = sub.add_parser("slots", help="SlotCon: for some prototypes, the images where each is strongest, masked")
    ps.add_argument("checkpoint", help="a SlotCon checkpoint (OUT/checkpoints/step_*.pth)")
    ps.add_argument("--data", help="image folder, list file or COCO json (default: bundled demo photos)")
    ps.add_argument("--max-images", type=int, default=1000, help="score at most this many images")
    g = ps.add_mutually_exclusive_group()
    g.add_argument("--prototypes", type=int, default=8, help="show the N prototypes present in most images")
    g.add_argument("--idxs", type=lambda s: [int(v) for v in s.split(",")], help="prototype indices, e.g. 3,17,42")
    ps.add_argument("--topk", type=int, default=5, help="images per prototype (rows)")
    ps.add_argument("-o", "--output", required=True, help="PNG to write")
    ps.set_defaults(func=run_slots)

    pc = sub.add_parser("correspondence", help="ORL stage 2: an image, its neighbours and its top RoI pairs "
                        "as matching coloured boxes")
    pc.add_argument("folder", help="a finished stage-2 folder (OUT/stage2 of objssl orl)")
    pc.add_argument("image", help="one of its images (path, or its index in OUT/stage2/knn/images.txt)")
    pc.add_argument("--neighbours", type=int, default=None, help="draw the first N neighbours (default: all k)")
    pc.add_argument("--pairs", type=int, default=5, help="pairs per neighbour to draw, best first (default 5)")
    pc.add_argument("-o", "--output", required=True, help="PNG to write")
    pc.set_defaults(func=run_correspondence)


def _load(path: str):
    from objssl.images.decode import BadImageError, load_rgb
    from objssl.errors import UserError

    try:
        return load_rgb(path)
    except BadImageError as exc:
        raise UserError(str(exc)) from None


def _source(name: str, params: list[str]):
    from objssl.commands._options import parse_key_values
    from objssl.errors import UserError
    from objssl.proposals import create_source

    try:
        return create_source(name, **parse_key_values(params, "--param"))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"--source {name}: {exc}") from None


def propose(source, image, path: str, max_side: int | None = None):
    """Boxes of ``source`` for a PIL ``image`` in its own pixels (optionally proposing on a smaller copy)."""
    import numpy as np
    import torch
    from PIL import Image

    w, h = image.size
    small = image
    if max_side and max(w, h) > max_side:
        f = max_side / max(w, h)
        small = image.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR)
    array = np.array(small)
    props = source(array, path=path) if source.needs_path else source(array)
    return props.boxes * torch.tensor([w / small.width, h / small.height] * 2)


def run_proposals(args: argparse.Namespace) -> int:
    from objssl.viz import draw_boxes, save_png

    image = _load(args.image)
    source = _source(args.source, args.param)
    boxes = propose(source, image, args.image, args.max_side)
    shown = boxes[: args.max_boxes]
    save_png(draw_boxes(image, shown), args.output)
    print(f"{args.output}: {len(shown)} of {len(boxes)} boxes from {source.cache_key()} on {args.image}")
    return 0


def _views_transform(method: str):
    """The transform ``method`` trains with (a registered method), or a view preset's."""
    from objssl.data.views import VIEW_PRESETS, BoxAwareViews
    from objssl.errors import UserError
    from objssl.methods import method_transform
    from objssl.registry import METHODS

    if method in METHODS:
        return method_transform({"name": method}, {"proposals": None})
    if method in VIEW_PRESETS:
        return BoxAwareViews.from_preset(method)
    raise UserError(f"--method {method!r}: no such method ({', '.join(METHODS.names())}) and no view preset "
                    f"({', '.join(sorted(VIEW_PRESETS))})")


def run_views(args: argparse.Namespace) -> int:
    import torch

    import objssl  # noqa: F401 - registers the methods
    from objssl.registry import PROPOSALS
    from objssl.viz import box_colors, draw_boxes, save_png, side_by_side

    transform = _views_transform(args.method)
    image = _load(args.image)
    torch.manual_seed(args.seed)
    if not getattr(transform, "wants_meta", False):  # image-level views (BYOL): no boxes to draw
        pictures = [draw_boxes(view, torch.zeros(0, 4), normalized=True) for view in transform(image)["views"]]
        save_png(side_by_side(pictures), args.output)
        print(f"{args.output}: {len(pictures)} {args.method} views of {args.image} (image-level, no boxes)")
        return 0
    name = args.source or ("selective_search" if "selective_search" in PROPOSALS else "random")
    boxes = propose(_source(name, args.param), image, args.image, max_side=500)
    torch.manual_seed(args.seed)
    sample = transform(image, {"index": 0, "path": args.image}, boxes=boxes)
    colors = box_colors(sample["box_mask"].shape[-1])
    per_pair = sample["box_mask"].ndim == 2  # SoCo's per-pair sets: view 1 shows its 1-2 set
    pictures = []
    for v, view in enumerate(sample["views"]):
        valid = (sample["box_mask"][max(v - 1, 0)] if per_pair else sample["box_mask"]).bool()
        boxes = sample["boxes"][v][0] if per_pair and v == 0 else sample["boxes"][v]
        pic = draw_boxes(view, boxes[valid], colors=[c for c, ok in zip(colors, valid) if ok],
                         normalized=True, width=3)
        if len(sample["views"]) > 1:  # the region this view shares with the next one
            other = (v + 1) % len(sample["views"])
            if sample["overlap_valid"][v, other]:
                pic = draw_boxes(pic, sample["overlap"][v, other][None], colors=[(255, 255, 255)], width=1)
        pictures.append(pic)
    canvas = ""
    if "instances" in sample:  # UniVIP: the image the instance crops are cut from, with their boxes
        valid = sample["box_mask"].bool()
        pictures.append(draw_boxes(sample["instances"]["canvas"], sample["instances"]["boxes"][valid],
                                   colors=[c for c, ok in zip(colors, valid) if ok], width=3))
        canvas = " (the last picture: the instance canvas)"
    save_png(side_by_side(pictures), args.output)
    n = int(sample["box_mask"][0].sum() if per_pair else sample["box_mask"].sum())
    print(f"{args.output}: {len(pictures)} {args.method} views of {args.image}{canvas}, {n} boxes "
          f"(source {name}); the same colour is the same box "
          + ("within a pair (per-pair sets: view 1 shows its set for view 2)" if per_pair else "in every view")
          + ", white = overlap with the next view")
    return 0


def run_slots(args: argparse.Namespace) -> int:
    import objssl  # noqa: F401 - registers the methods
    from objssl.data import demo_images, list_images
    from objssl.errors import UserError
    from objssl.checkpoint import load_checkpoint
    from objssl.methods import method_from_checkpoint
    from objssl.viz import save_png
    from objssl.viz.slots import most_used_prototypes, prototype_scores, render_prototypes

    ckpt = load_checkpoint(args.checkpoint)
    method = method_from_checkpoint(ckpt)
    if not hasattr(method, "teacher_scores"):
        raise UserError(f"{args.checkpoint} is a {ckpt.get('method')!r} checkpoint; viz slots needs SlotCon's prototypes")
    paths = (list_images(args.data) if args.data else demo_images())[: args.max_images]
    scores, images, used = prototype_scores(method, paths)
    K = scores.shape[1]
    if args.idxs:
        bad = [i for i in args.idxs if not 0 <= i < K]
        if bad:
            raise UserError(f"--idxs {bad}: the checkpoint has prototypes 0..{K - 1}")
        protos = args.idxs
    else:
        # the prototypes that win pixels in the most images: the ones worth looking at first
        protos = most_used_prototypes(method, images, min(args.prototypes, K))
    grid = render_prototypes(method, images, scores, protos, topk=args.topk)
    save_png(grid, args.output)
    print(f"{args.output}: prototypes {protos} (columns) x top-{min(args.topk, len(images))} of {len(used)} images "
          f"(rows); red = the pixels each prototype wins")
    return 0


def run_correspondence(args: argparse.Namespace) -> int:
    import os

    from objssl.correspondence.store import CorrespondenceStore
    from objssl.errors import UserError
    from objssl.viz import save_png
    from objssl.viz.correspondence import render_correspondence

    store = CorrespondenceStore.open(args.folder)
    try:
        index = (int(args.image) if args.image.isdigit() and not os.path.exists(args.image)
                 else store.index_of(args.image))
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    if not 0 <= index < len(store):
        raise UserError(f"image index {index}: {args.folder} has images 0..{len(store) - 1}")
    picture, drawn = render_correspondence(store, index, neighbours=args.neighbours, pairs=args.pairs)
    save_png(picture, args.output)
    print(f"{args.output}: {store.images[index]} (left) and its neighbours (right), {drawn} RoI pairs; "
          "the same colour is one stored pair")
    return 0
