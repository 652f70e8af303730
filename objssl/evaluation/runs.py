"""One evaluation run, from ``CKPT`` and data paths to the result dict (:mod:`objssl.evaluation.results`).

Shared by ``objssl eval`` and anything else that evaluates a checkpoint: it reads the labelled
images, builds the backbone, extracts (or reads cached) features and runs the protocol.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from objssl.errors import DataError
from objssl.evaluation.checkpoints import EvalBackbone, load_eval_backbone
from objssl.evaluation.datasets import LabelledImages, read_coco_labels, read_image_folder, read_voc
from objssl.evaluation.features import Features, extract_features, feature_cache_key, svm_feature_kind
from objssl.evaluation.transforms import centre_crop_transform, transform_key, voc07_svm_transform

__all__ = ["ExtractOptions", "default_cache_dir", "run_knn", "run_linear", "run_svm"]

log = logging.getLogger("objssl.eval")

@dataclass
class ExtractOptions:
    """How features are extracted (none of this changes the numbers, except ``image_size``)."""

    image_size: int = 224
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    cache_dir: str | None = None  # None: no cache
    progress: bool = True

def default_cache_dir(out_json: str | None) -> str:
    """Next to the result file (``<its folder>/eval_cache``), else ``~/.cache/objssl/eval``."""
    if out_json:
        return os.path.join(os.path.dirname(os.path.abspath(out_json)), "eval_cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "objssl", "eval")

def _features(eb: EvalBackbone, data: LabelledImages, transform, kind: str, opts: ExtractOptions,
              desc: str) -> tuple[Features, LabelledImages]:
    key = feature_cache_key(eb.fingerprint, eb.name, kind, transform_key(transform), data.paths)
    feats = extract_features(eb.module, data.paths, transform, image_size=opts.image_size, kind=kind,
                             batch_size=opts.batch_size, num_workers=opts.num_workers, device=opts.device,
                             cache_dir=opts.cache_dir, cache_key=key, progress=opts.progress, desc=desc)
    if len(feats.kept) == 0:
        raise DataError(f"{data.source}: none of its {len(data)} images could be read")
    return feats, data.subset(feats.kept)

def _data_record(data: LabelledImages, feats: Features) -> dict:
    return {**data.describe(), "used": len(feats.kept), "skipped": len(feats.skipped),
            "skipped_files": [f"{p}: {r}" for p, r in feats.skipped[:20]], "from_cache": feats.from_cache}

def _base(protocol: str, eb: EvalBackbone, kind: str, opts: ExtractOptions) -> dict:
    return {"protocol": protocol, "checkpoint": eb.checkpoint, "backbone": eb.name, "weights": eb.source,
            "feature": kind, "image_size": opts.image_size}

def _single_label_sets(train_dir: str, val_dir: str) -> tuple[LabelledImages, LabelledImages]:
    train, val = read_image_folder(train_dir), read_image_folder(val_dir)
    if train.classes != val.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise DataError(f"{val_dir}: its class folders differ from {train_dir}'s (e.g. {only[:3]})")
    return train, val

def run_knn(ckpt: str, train_dir: str, val_dir: str, *, k: int = 20, temperature: float = 0.07,
            backbone: str | None = None, branch: str = "online", opts: ExtractOptions | None = None) -> dict:
    from objssl.evaluation.knn import knn_accuracy

    opts = opts or ExtractOptions()
    train, val = _single_label_sets(train_dir, val_dir)
    if len(train) < k:
        raise DataError(f"{train_dir}: {len(train)} train images, fewer than k={k}")
    eb = load_eval_backbone(ckpt, backbone, branch=branch)
    transform = centre_crop_transform(opts.image_size)
    ftr, train = _features(eb, train, transform, "pooled", opts, "train features")
    fva, val = _features(eb, val, transform, "pooled", opts, "val features")
    if len(train) < k:
        raise DataError(f"{train_dir}: {len(train)} readable train images, fewer than k={k}")
    metrics = knn_accuracy(ftr.values, torch.as_tensor(train.labels), fva.values, torch.as_tensor(val.labels),
                           num_classes=len(train.classes), k=k, temperature=temperature)
    return {**_base("knn", eb, "pooled", opts), "k": k, "temperature": temperature,
            "data": {"train": _data_record(train, ftr), "val": _data_record(val, fva)}, "metrics": metrics}

def run_linear(ckpt: str, train_dir: str, val_dir: str, *, backbone: str | None = None, branch: str = "online",
               seed: int = 0, opts: ExtractOptions | None = None) -> dict:
    from objssl.evaluation.linear import linear_probe

    opts = opts or ExtractOptions()
    train, val = _single_label_sets(train_dir, val_dir)
    eb = load_eval_backbone(ckpt, backbone, branch=branch)
    transform = centre_crop_transform(opts.image_size)
    ftr, train = _features(eb, train, transform, "pooled", opts, "train features")
    fva, val = _features(eb, val, transform, "pooled", opts, "val features")
    probe = linear_probe(ftr.values.numpy(), train.labels, fva.values.numpy(), val.labels, seed=seed)
    return {**_base("linear", eb, "pooled", opts), "seed": seed,
            "data": {"train": _data_record(train, ftr), "val": _data_record(val, fva)}, **probe}

def read_svm_sets(voc: str | None = None, coco_train: str | None = None, coco_test: str | None = None,
                  image_root: str | None = None) -> tuple[LabelledImages, LabelledImages]:
    """(trainval, test) from a VOC-layout root or a pair of COCO jsons."""
    if voc:
        trainval = read_voc(voc, "trainval")
        return trainval, read_voc(voc, "test", trainval.classes)
    if coco_train and coco_test:
        trainval = read_coco_labels(coco_train, image_root)
        return trainval, read_coco_labels(coco_test, image_root, trainval.classes)
    raise DataError("give --voc ROOT, or --coco-train JSON and --coco-test JSON")

def run_svm(ckpt: str, trainval: LabelledImages, test: LabelledImages, *, low_shot: bool = False,
            cost_selection: str = "heldout", costs: tuple[float, ...] | None = None,
            ks: tuple[int, ...] | None = None, seed: int = 0, backbone: str | None = None,
            branch: str = "online", opts: ExtractOptions | None = None) -> dict:
    from objssl.evaluation.low_shot import LOW_SHOT_K, low_shot_svm
    from objssl.evaluation.svm import DEFAULT_COSTS, full_svm

    opts = opts or ExtractOptions()
    costs = tuple(costs or DEFAULT_COSTS)
    eb = load_eval_backbone(ckpt, backbone, branch=branch)
    kind = svm_feature_kind(eb.module)
    if kind != "feat5":
        log.info("%s is not a ResNet: the SVM uses its pooled vector, not ORL's feat5", eb.name)
    transform = voc07_svm_transform(opts.image_size)
    ftr, trainval = _features(eb, trainval, transform, kind, opts, "trainval features")
    fte, test = _features(eb, test, transform, kind, opts, "test features")
    args = dict(classes=trainval.classes, costs=costs, cost_selection=cost_selection)
    if low_shot:
        out = low_shot_svm(ftr.values.numpy(), trainval.targets, fte.values.numpy(), test.targets,
                           ks=tuple(ks or LOW_SHOT_K), seed=seed, **args)
        protocol = "svm_low_shot"
    else:
        out = full_svm(ftr.values.numpy(), trainval.targets, fte.values.numpy(), test.targets, **args)
        protocol = "svm"
    note = ("feat5: res5 -> AvgPool2d(6, 1) -> flattened (ORL; a res5 smaller than 6x6 is pooled by its side)"
            if kind == "feat5"
            else f"pooled: {eb.name} is not a ResNet, so its pooled vector replaces ORL's feat5")
    return {**_base(protocol, eb, kind, opts), "feature_note": note, "feature_dim": int(ftr.values.shape[1]),
            "data": {"trainval": _data_record(trainval, ftr), "test": _data_record(test, fte),
                     "classes": trainval.classes}, **out}

