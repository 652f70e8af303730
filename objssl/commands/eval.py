"""``objssl eval {knn,linear,svm,report}``: evaluate a checkpoint's frozen backbone, compare runs.

``CKPT`` is an objssl checkpoint, a timm export (with ``--backbone``), or ``random`` / ``timm:NAME``
(random init). Each protocol writes its result json (``-o``) and prints its metrics.
"""

from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="objssl checkpoint, timm export, 'random' or 'timm:NAME'")
    p.add_argument("--backbone", help="timm model name (needed for a timm export and for 'random')")
    p.add_argument("--branch", choices=("online", "target"), default="online",
                   help="which backbone of an objssl checkpoint: the online one (default) or the EMA target")
    p.add_argument("--image-size", type=int, default=224, help="input size (default 224)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass when extracting")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    p.add_argument("--cache-dir", help="feature cache (default: OUT's folder/eval_cache, else ~/.cache/objssl/eval)")
    p.add_argument("--no-cache", action="store_true", help="extract features without reading or writing the cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", help="result json to write")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="kNN, linear probe and VOC07 SVM on frozen features; reports",
                              description=__doc__)
    sub = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)

    knn = sub.add_parser("knn", help="weighted kNN top-1/top-5 (DINO/InstDisc) on ImageFolder trees")
    _common(knn)
    knn.add_argument("--train", required=True, help="ImageFolder tree of the labelled train images")
    knn.add_argument("--val", required=True, help="ImageFolder tree of the validation images")
    knn.add_argument("--k", type=int, default=20, help="neighbours (default 20)")
    knn.add_argument("--temperature", type=float, default=0.07, help="vote weight exp(s/T) (default 0.07)")
    knn.set_defaults(func=run_knn)

    lin = sub.add_parser("linear", help="linear probe (logistic regression) on frozen features")
    _common(lin)
    lin.add_argument("--train", required=True, help="ImageFolder tree of the labelled train images")
    lin.add_argument("--val", required=True, help="ImageFolder tree of the validation images")
    lin.add_argument("--seed", type=int, default=0, help="seed of the train split that chooses C")
    lin.set_defaults(func=run_linear)

    svm = sub.add_parser("svm", help="ORL's VOC07 SVM protocol (mAP), optionally low-shot")
    _common(svm)
    svm.add_argument("--voc", help="VOC-layout root (JPEGImages/, ImageSets/Main/{class}_{trainval,test}.txt)")
    svm.add_argument("--coco-train", help="COCO json of the trainval images (instead of --voc)")
    svm.add_argument("--coco-test", help="COCO json of the test images (instead of --voc)")
    svm.add_argument("--image-root", help="folder of the COCO jsons' file_names (default: the json's folder)")
    svm.add_argument("--low-shot", action="store_true", help="k = 1..96 positives per class x 5 samples")
    svm.add_argument("--shots", help="comma-separated k values for --low-shot (default 1,2,4,8,16,32,64,96)")
    svm.add_argument("--cost-selection", choices=("heldout", "test"), default="heldout",
                     help="heldout (default: never sees test) or test (ORL's low-shot rule: best test mAP)")
    svm.add_argument("--costs", default="1,10,100",
                     help="comma-separated SVM costs, or 'orl' for ORL's full list (1,10,100 and 0.5^4..0.5^19)")
    svm.add_argument("--seed", type=int, default=0, help="seed of the low-shot samples and held-out split")
    svm.set_defaults(func=run_svm)

    rep = sub.add_parser("report", help="several result jsons side by side: table, CSV, plot")
    rep.add_argument("results", nargs="+", metavar="RESULT.json")
    rep.add_argument("-o", "--output", required=True, help="figure to write (.png, .pdf, .svg)")
    rep.add_argument("--csv", help="also write the table as CSV")
    rep.set_defaults(func=run_report)


def _options(args: argparse.Namespace):
    from objssl.errors import UserError
    from objssl.evaluation.runs import ExtractOptions, default_cache_dir

    if args.image_size < 8 or args.batch_size < 1 or args.workers < 0:
        raise UserError("--image-size must be >= 8, --batch-size >= 1 and --workers >= 0")
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir(args.output))
    return ExtractOptions(image_size=args.image_size, batch_size=args.batch_size, num_workers=args.workers,
                          device=args.device, cache_dir=cache, progress=not args.no_progress)


def _finish(result: dict, args: argparse.Namespace) -> int:
    from objssl.evaluation.results import write_result

    if args.output:
        write_result(args.output, result)
    shown = {k: v for k, v in result.items() if k in ("protocol", "checkpoint", "backbone", "feature", "metrics",
                                                       "C", "chosen_C", "cost_selection", "skipped_k")}
    print(json.dumps(shown, indent=2, default=str))
    if args.output:
        print(f"wrote {args.output}")
    return 0


def run_knn(args: argparse.Namespace) -> int:
    from objssl.errors import UserError
    from objssl.evaluation.runs import run_knn as knn

    if args.k < 1 or not args.temperature > 0:
        raise UserError("--k must be >= 1 and --temperature > 0")
    return _finish(knn(args.checkpoint, args.train, args.val, k=args.k, temperature=args.temperature,
                       backbone=args.backbone, branch=args.branch, opts=_options(args)), args)


def run_linear(args: argparse.Namespace) -> int:
    from objssl.evaluation.runs import run_linear as linear

    return _finish(linear(args.checkpoint, args.train, args.val, backbone=args.backbone, branch=args.branch,
                          seed=args.seed, opts=_options(args)), args)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from objssl.errors import UserError

    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r}: give comma-separated numbers") from None
    if not values or any(not v > 0 for v in values):
        raise UserError(f"{flag} {text!r}: give positive numbers")
    return values


def run_svm(args: argparse.Namespace) -> int:
    from objssl.errors import UserError
    from objssl.evaluation.runs import read_svm_sets, run_svm as svm
    from objssl.evaluation.svm import ORL_COSTS

    costs = ORL_COSTS if args.costs.strip().lower() == "orl" else _floats(args.costs, "--costs")
    ks = None
    if args.shots:
        ks = tuple(int(k) for k in _floats(args.shots, "--shots"))
        if not args.low_shot:
            raise UserError("--shots is for --low-shot")
    trainval, test = read_svm_sets(args.voc, args.coco_train, args.coco_test, args.image_root)
    return _finish(svm(args.checkpoint, trainval, test, low_shot=args.low_shot, cost_selection=args.cost_selection,
                       costs=costs, ks=ks, seed=args.seed, backbone=args.backbone, branch=args.branch,
                       opts=_options(args)), args)


def run_report(args: argparse.Namespace) -> int:
    from objssl.evaluation.report import format_table, plot_results, result_rows, write_csv
    from objssl.evaluation.results import read_result

    results = [(path, read_result(path)) for path in args.results]
    rows = result_rows(results)
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    plot_results(results, args.output)
    print(f"wrote {args.output}")
    return 0
