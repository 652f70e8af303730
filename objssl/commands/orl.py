"""``objssl orl --config FILE [--data PATH] [--out DIR] [--stages 1,2,3] [--resume] [key=value ...]``."""

from __future__ import annotations

import argparse

from objssl.errors import UserError

EXIT_STOPPED = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "orl",
        help="ORL's three stages: BYOL, kNN + RoI-pair correspondence, object-level training",
        description="Run ORL (Xie et al., NeurIPS 2021): stage 1 BYOL in OUT/stage1, stage 2 features, "
        "kNN, proposals and RoI pairs in OUT/stage2, stage 3 the orl method in OUT/stage3. "
        "Overrides name the stage: stage1.train.max_steps=10 stage2.knn_k=5 stage3.optim.lr=0.1. "
        "Exit status: 0 done, 2 error (one line), 3 stopped by SIGTERM/SIGINT (continue with --resume).",
    )
    p.add_argument("--config", required=True, help="pipeline config (configs/orl_coco_r50.yaml, configs/orl_demo.yaml)")
    p.add_argument("--data", help="image folder, list file or COCO json for every stage")
    p.add_argument("--out", help="output folder (default: runs/orl)")
    p.add_argument("--stages", default="1,2,3", help="consecutive stages to run, e.g. 1,2 or 3 (default 1,2,3)")
    p.add_argument("--resume", action="store_true", help="continue the pipeline in --out at its first unfinished piece")
    p.add_argument("overrides", nargs="*", metavar="stageN.key=value")
    p.set_defaults(func=run)


def _stages(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise UserError(f"--stages {text!r}: give stage numbers separated by commas, e.g. 1,2,3") from None


def run(args: argparse.Namespace) -> int:
    import objssl  # noqa: F401 - registers the built-in parts
    from objssl.pipelines.orl import run_orl
    from objssl.pipelines.orl_config import load_orl_config

    cfg = load_orl_config(args.config, args.overrides, data=args.data)
    out = args.out or "runs/orl"
    result = run_orl(cfg, out, stages=_stages(args.stages), resume=args.resume)
    from objssl.distributed import is_main_process

    if not is_main_process():  # under torchrun the summary is rank 0's
        return EXIT_STOPPED if result["stopped"] else 0
    if result["stopped"]:
        print(f"stopped in stage {result['stopped_in']}; continue with --resume (output in {out})", flush=True)
        return EXIT_STOPPED
    parts = []
    for n in (1, 2, 3):
        r = result.get(f"stage{n}")
        if r is None:
            continue
        if r.get("reused"):
            parts.append(f"stage {n} finished earlier")
        elif n == 2:
            parts.append(f"stage 2: {r.get('images', 0)} images, {r.get('boxes', 0)} boxes, {r.get('pairs', 0)} pairs, "
                         f"skipped {r.get('images_skipped', 0)} undecodable, {r.get('no_proposals', 0)} without "
                         f"proposals, {r.get('fallback_first_box', 0)} kept their first raw box")
        else:
            parts.append(f"stage {n}: step {r['step']}, loss {r['loss']:.4f}, images skipped {r['images_skipped']}")
    print("done: " + "; ".join(parts) + f"; output in {out}")
    return 0
