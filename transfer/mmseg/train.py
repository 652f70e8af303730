#!/usr/bin/env python
"""Fine-tune (or test) an mmsegmentation model whose backbone comes from an objssl checkpoint.

Usage::

    # train: the backbone is read straight from the pretraining checkpoint (teacher by default)
    python transfer/mmseg/train.py transfer/mmseg/configs/fcn_objssl_r50-d8_4x4-80k_ade20k-512x512.py \
        --checkpoint runs/byol/checkpoints/step_00100000.pth --data-root data/ade/ADEChallengeData2016 \
        --work-dir runs/ade_fcn
    torchrun --nproc_per_node 4 transfer/mmseg/train.py CONFIG --launcher pytorch ...   # several GPUs
    python transfer/mmseg/train.py CONFIG --resume --work-dir runs/ade_fcn            # continue
    python transfer/mmseg/train.py CONFIG --test --load-from runs/ade_fcn/iter_80000.pth --data-root ...

The configs load objssl's backbone with ``custom_imports`` (``objssl.integrations.mmseg``).
mmengine 0.10.7 reloads its own checkpoints with ``torch.load`` without ``weights_only``, which
torch >= 2.6 refuses; this script sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for its process
(only for checkpoints you trust: your own runs).
"""

from __future__ import annotations

import argparse
import os
import sys

# before torch is imported anywhere: mmengine's resume/load_from need full unpickling
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

try:
    import objssl  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import objssl.integrations.mmseg  # noqa: E402,F401  - registers ObjsslTimmBackbone (+ mmcv._ext stand-in)
from mmengine.config import Config, DictAction  # noqa: E402
from objssl.errors import UserError  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="mmseg fine-tuning from an objssl checkpoint",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("config", help="mmseg config (transfer/mmseg/configs/*.py)")
    p.add_argument("--checkpoint", help="objssl checkpoint (or timm / objssl-export weights) for the backbone")
    p.add_argument("--which", default="teacher", choices=("teacher", "student"), help="backbone of the checkpoint")
    p.add_argument("--data-root", help="dataset folder: replaces data_root of every dataset in the config")
    p.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    p.add_argument("--test", action="store_true", help="only evaluate (needs --load-from)")
    p.add_argument("--load-from", help="weights of a whole segmentor (a run's iter_N.pth) to start from or test")
    p.add_argument("--resume", action="store_true", help="resume the latest checkpoint in --work-dir")
    p.add_argument("--amp", action="store_true", help="mixed precision training")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--local-rank", "--local_rank", type=int, default=0)
    args = p.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def _datasets(node):
    """Every dataset dict under a dataloader's ``dataset`` (ConcatDataset / RepeatDataset included)."""
    if isinstance(node, dict):
        if "data_root" in node or "data_prefix" in node:
            yield node
        for key in ("dataset", "datasets"):
            child = node.get(key)
            for c in child if isinstance(child, list) else [child]:
                yield from _datasets(c)


def set_data_root(cfg: Config, data_root: str) -> None:
    cfg.data_root = data_root
    for name in DATALOADERS:
        for ds in _datasets(cfg.get(name, {}).get("dataset")):
            ds["data_root"] = data_root


def check_data(cfg: Config, splits: tuple[str, ...]) -> None:
    """Fail early, naming the path, when a dataset folder or split file of the config is missing."""
    for name in splits:
        for ds in _datasets(cfg.get(name, {}).get("dataset")):
            root = ds.get("data_root") or ""
            if not os.path.isdir(root):
                raise SystemExit(f"train.py: error: {name}: data_root {root!r} is not a folder (use --data-root DIR)")
            for key, sub in dict(ds.get("data_prefix") or {}).items():
                if sub and not os.path.isdir(os.path.join(root, sub)):
                    raise SystemExit(f"train.py: error: {name}: {key} folder {os.path.join(root, sub)!r} does not exist")
            ann = ds.get("ann_file")
            if ann and not os.path.isfile(os.path.join(root, ann)):
                raise SystemExit(f"train.py: error: {name}: ann_file {os.path.join(root, ann)!r} does not exist")


def build_config(args: argparse.Namespace) -> Config:
    if not os.path.isfile(args.config):
        raise SystemExit(f"train.py: error: config {args.config!r} does not exist")
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or os.path.join(
        "work_dirs", os.path.splitext(os.path.basename(args.config))[0])
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise SystemExit(f"train.py: error: --checkpoint {args.checkpoint!r} does not exist")
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=os.path.abspath(args.checkpoint),
                                           which=args.which)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if args.load_from:
        if not os.path.isfile(args.load_from):
            raise SystemExit(f"train.py: error: --load-from {args.load_from!r} does not exist")
        cfg.load_from = args.load_from
    if args.test and not args.load_from:
        raise SystemExit("train.py: error: --test needs --load-from WEIGHTS (a fine-tuned segmentor)")
    cfg.resume = args.resume
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    check_data(cfg, ("test_dataloader",) if args.test else ("train_dataloader", "val_dataloader"))
    return cfg


def main(argv: list[str] | None = None) -> dict | None:
    """Train (then validate, as the config's ``val_interval`` says) or, with ``--test``, test."""
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    if args.test:
        return runner.test()
    runner.train()
    return None


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:  # bad checkpoint / backbone name / option: one line, no traceback
        raise SystemExit(f"train.py: error: {exc}") from None
