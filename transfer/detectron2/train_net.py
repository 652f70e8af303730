#!/usr/bin/env python
"""Fine-tune (or evaluate) a detectron2 Mask R-CNN whose backbone comes from an objssl checkpoint.

Usage (flags as in detectron2's tools/train_net.py, plus objssl's)::

    # COCO, 8 GPUs, objssl backbone (any timm model) read straight from the pretraining checkpoint
    python transfer/detectron2/train_net.py --num-gpus 8 \
        --config-file transfer/detectron2/configs/mask_rcnn_objssl_R50_FPN_1x.yaml \
        --checkpoint runs/byol/checkpoints/step_00100000.pth \
        --train-json coco/annotations/instances_train2017.json --train-images coco/train2017 \
        --test-json coco/annotations/instances_val2017.json --test-images coco/val2017 \
        OUTPUT_DIR runs/d2_byol_r50_1x

    # a SoCo checkpoint into a detector with other head sizes: its backbone (and FPN) only
    python transfer/detectron2/train_net.py ... --checkpoint runs/soco/checkpoints/last.pth --parts backbone+fpn

    # evaluate a fine-tuned model / resume an interrupted run
    python transfer/detectron2/train_net.py --config-file ... --eval-only MODEL.WEIGHTS runs/d2/model_final.pth ...
    python transfer/detectron2/train_net.py --config-file ... --resume ...

    # several machines: --num-machines 2 --machine-rank 0|1 --dist-url tcp://HOST:PORT

Datasets: COCO-format json + image folder from the command line (``--train-json``/``--train-images``,
``--test-json``/``--test-images``; ``--dataset-format lvis`` for LVIS v1 jsons); without them the
config's ``DATASETS`` names are used (detectron2's built-ins under ``$DETECTRON2_DATASETS``).
``MODEL.ROI_HEADS.NUM_CLASSES`` is set from the json's categories.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import OrderedDict

try:
    import objssl  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, LVISEvaluator, verify_results
from detectron2.utils.logger import setup_logger

from objssl.errors import UserError
from objssl.integrations.detectron2 import PART_CHOICES, add_objssl_config, load_objssl_parts

TRAIN_NAME, TEST_NAME = "objssl_train", "objssl_test"


def argument_parser():
    parser = default_argument_parser(epilog=__doc__.split("Datasets:")[0].split("Usage")[1])
    parser.add_argument("--checkpoint", default=None,
                        help="objssl checkpoint (or timm weights) for the backbone: sets MODEL.OBJSSL.CHECKPOINT")
    parser.add_argument("--which", default=None, choices=("teacher", "student"),
                        help="which backbone of the checkpoint (default: the config's MODEL.OBJSSL.WHICH, teacher)")
    parser.add_argument("--parts", default=None, choices=PART_CHOICES,
                        help="what of the checkpoint to load: the backbone alone, backbone+fpn, or all (backbone, "
                             "FPN and box head; the default, which for checkpoints without detector parts, e.g. "
                             "BYOL, is the backbone alone): sets MODEL.OBJSSL.PARTS")
    parser.add_argument("--train-json", default=None, help="COCO-format annotation json for training")
    parser.add_argument("--train-images", default=None, help="image folder of --train-json")
    parser.add_argument("--test-json", default=None, help="COCO-format annotation json for evaluation")
    parser.add_argument("--test-images", default=None, help="image folder of --test-json")
    parser.add_argument("--dataset-format", default="coco", choices=("coco", "lvis"),
                        help="format of --train-json/--test-json (lvis: LVIS v1, evaluated with LVISEvaluator)")
    return parser


def check_args(args, parser) -> None:
    """Refuse missing files and half-given dataset flags before anything is built or spawned."""
    if not args.config_file:
        parser.error("--config-file is required (see transfer/detectron2/configs/)")
    paths = [("--config-file", args.config_file, os.path.isfile), ("--checkpoint", args.checkpoint, os.path.isfile),
             ("--train-json", args.train_json, os.path.isfile), ("--train-images", args.train_images, os.path.isdir),
             ("--test-json", args.test_json, os.path.isfile), ("--test-images", args.test_images, os.path.isdir)]
    for flag, path, exists in paths:
        if path is not None and not exists(path):
            kind = "folder" if exists is os.path.isdir else "file"
            parser.error(f"{flag} {path!r}: no such {kind}")
    for split in ("train", "test"):
        js, im = getattr(args, f"{split}_json"), getattr(args, f"{split}_images")
        if (js is None) != (im is None):
            parser.error(f"--{split}-json and --{split}-images go together (got only one)")


def _categories(json_file: str) -> list[dict]:
    with open(json_file) as f:
        cats = json.load(f).get("categories")
    if not cats:
        raise ValueError(f"{json_file}: no 'categories' list: not a COCO-format annotation file")
    return cats


def register_datasets(cfg: CfgNode, args) -> str:
    """Register ``--train-json``/``--test-json``, point ``cfg.DATASETS`` at them; returns a log line."""
    if args.train_json is None and args.test_json is None:
        return ""
    if args.dataset_format == "lvis":
        from detectron2.data.datasets.lvis import get_lvis_instances_meta, register_lvis_instances

        meta = get_lvis_instances_meta("lvis_v1")
        register = lambda name, js, im: register_lvis_instances(name, meta, js, im)  # noqa: E731
        num_classes = len(meta["thing_classes"])
    else:
        register = lambda name, js, im: register_coco_instances(name, {}, js, im)  # noqa: E731
        cats = _categories(args.test_json or args.train_json)
        if args.train_json and args.test_json:
            other = _categories(args.train_json)
            if sorted(c["id"] for c in other) != sorted(c["id"] for c in cats):
                raise ValueError(f"--train-json {args.train_json} and --test-json {args.test_json} have different categories")
        num_classes = len(cats)
    for name, js, im in ((TRAIN_NAME, args.train_json, args.train_images), (TEST_NAME, args.test_json, args.test_images)):
        if js is None:
            continue
        if name in MetadataCatalog.list():  # main() called again in one process (tests)
            from detectron2.data import DatasetCatalog

            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register(name, os.path.abspath(js), os.path.abspath(im))
    if args.train_json:
        cfg.DATASETS.TRAIN = (TRAIN_NAME,)
    if args.test_json:
        cfg.DATASETS.TEST = (TEST_NAME,)
    note = f"MODEL.ROI_HEADS.NUM_CLASSES {cfg.MODEL.ROI_HEADS.NUM_CLASSES} -> {num_classes} (categories of the dataset)"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    return note


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer + objssl's detector parts + COCO/LVIS evaluation by dataset."""

    @classmethod
    def build_model(cls, cfg: CfgNode):
        model = super().build_model(cfg)
        load_objssl_parts(model, cfg)
        return model

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> DatasetEvaluator:
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        if MetadataCatalog.get(dataset_name).get("evaluator_type") == "lvis":
            return LVISEvaluator(dataset_name, output_dir=output_folder)
        return COCOEvaluator(dataset_name, output_dir=output_folder)


def setup(args) -> CfgNode:
    cfg = get_cfg()
    add_objssl_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.checkpoint:
        cfg.MODEL.OBJSSL.CHECKPOINT = os.path.abspath(args.checkpoint)
    if args.which:
        cfg.MODEL.OBJSSL.WHICH = args.which
    if args.parts:
        cfg.MODEL.OBJSSL.PARTS = args.parts
    note = register_datasets(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="objssl", abbrev_name="objssl")
    if note:
        logging.getLogger("objssl").info(note)
    return cfg


def main(args) -> OrderedDict | dict:
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    parser = argument_parser()
    args = parser.parse_args()
    check_args(args, parser)
    print("Command Line Args:", args)
    try:
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except UserError as exc:  # bad checkpoint / backbone name / option: one line, no traceback
        raise SystemExit(f"train_net.py: error: {exc}") from None
