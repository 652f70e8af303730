"""A tiny benchmark from the demo photos and drawn cut-outs: every format agrees with the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from objssl.cli import main
from objssl.data.scenes import MANIFEST, build_scenes
from objssl.data.scenes.crops import MIN_CROP_SIDE
from objssl.errors import UserError

N, SIZE = 16, 64


def _build(root, out, seed=0):
    return build_scenes(str(out), n=N, size=SIZE, objects=str(root), seed=seed, min_objects=2,
                        max_objects=5, progress=False)


@pytest.fixture(scope="module")
def bench(cutout_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "bench"
    summary = _build(cutout_root, out)
    return out, summary


@pytest.fixture(scope="module")
def coco(bench):
    return COCO(str(bench[0] / "annotations.json"))


def _read_split(path: Path) -> dict[str, int]:
    return {name: int(label) for name, label in (line.split() for line in path.read_text().splitlines())}


def test_pycocotools_reads_the_json_and_masks_match_boxes_and_areas(bench, coco):
    out, summary = bench
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(summary.categories)
    assert len(coco.getImgIds()) == N and len(coco.getAnnIds()) == summary.instances > N
    for img in coco.loadImgs(coco.getImgIds()):
        assert Image.open(out / "images" / img["file_name"]).size == (SIZE, SIZE)
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum()
        assert list(mask_utils.toBbox(ann["segmentation"])) == ann["bbox"]
        assert ann["difficult"] == int(ann["visibility"] < 0.5)


def test_voc_labels_are_the_categories_with_a_visible_instance(bench, coco):
    out, summary = bench
    main_dir = out / "voc" / "ImageSets" / "Main"
    ids = {s: (main_dir / f"{s}.txt").read_text().split() for s in ("trainval", "test")}
    assert sorted(ids["trainval"] + ids["test"]) == [f"{i:06d}" for i in range(N)]
    assert ids["trainval"] and ids["test"]
    split_of = {img["id"]: img["split"] for img in coco.loadImgs(coco.getImgIds())}
    for split, names in ids.items():
        labels = {c: _read_split(main_dir / f"{c}_{split}.txt") for c in summary.categories}
        for name in names:
            image_id = int(name)
            assert split_of[image_id] == split
            assert (out / "voc" / "JPEGImages" / f"{name}.jpg").read_bytes() == \
                (out / "images" / f"{name}.jpg").read_bytes()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            for cat_id, cls in enumerate(summary.categories, start=1):
                mine = [a for a in anns if a["category_id"] == cat_id]
                expected = -1 if not mine else (1 if any(not a["difficult"] for a in mine) else 0)
                assert labels[cls][name] == expected, (name, cls)


def test_crops_are_the_boxes_of_clear_instances_in_their_split(bench, coco):
    out, summary = bench
    written = 0
    for split, voc_split in (("train", "trainval"), ("val", "test")):
        for cls_dir in sorted((out / "crops" / split).iterdir()):
            for crop_path in sorted(cls_dir.iterdir()):
                image_name, ann_id = crop_path.stem.split("_")
                ann = coco.loadAnns([int(ann_id)])[0]
                img = coco.loadImgs([ann["image_id"]])[0]
                assert img["file_name"] == f"{image_name}.jpg" and img["split"] == voc_split
                assert coco.loadCats([ann["category_id"]])[0]["name"] == cls_dir.name
                assert not ann["difficult"] and min(ann["bbox"][2:]) >= MIN_CROP_SIDE
                x, y, w, h = ann["bbox"]
                crop = np.asarray(Image.open(crop_path).convert("RGB"), dtype=float)
                scene = np.asarray(Image.open(out / "images" / img["file_name"]), dtype=float)
                assert crop.shape == (h, w, 3)
                assert np.abs(crop - scene[y: y + h, x: x + w]).mean() < 12  # both JPEG-coded, on different 8x8 grids
                written += 1
    eligible = [a for a in coco.loadAnns(coco.getAnnIds())
                if not a["difficult"] and min(a["bbox"][2:]) >= MIN_CROP_SIDE]
    dropped = {c["id"] for c in coco.loadCats(coco.getCatIds()) if c["name"] in summary.dropped_crop_classes}
    assert written == len([a for a in eligible if a["category_id"] not in dropped]) > 0
    assert sorted(os.listdir(out / "crops" / "train")) == sorted(os.listdir(out / "crops" / "val"))


def test_semseg_is_the_union_of_visible_masks_per_class(bench, coco):
    out, summary = bench
    assert (out / "semseg" / "classes.txt").read_text().split() == ["background", *summary.categories]
    for img in coco.loadImgs(coco.getImgIds()):
        png = Image.open(out / "semseg" / img["file_name"].replace(".jpg", ".png"))
        assert png.mode == "P"
        sem = np.asarray(png)
        expected = np.zeros((SIZE, SIZE), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            mask = coco.annToMask(ann).astype(bool)
            assert not expected[mask].any()  # visible masks are disjoint: occlusion applied
            expected[mask] = ann["category_id"]
        assert np.array_equal(sem, expected)


def test_manifest_counts_the_skipped_cutouts(bench):
    manifest = json.loads((bench[0] / MANIFEST).read_text())
    assert manifest["skipped"] == {"no alpha channel": 1}
    assert manifest["splits"]["trainval"] + manifest["splits"]["test"] == N
    assert manifest["instances"] == bench[1].instances


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(bench, cutout_root, tmp_path):
    again = tmp_path / "again"
    _build(cutout_root, again)
    first, second = _files(bench[0]), _files(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    other = tmp_path / "other"
    _build(cutout_root, other, seed=1)
    assert (other / "images" / "000000.jpg").read_bytes() != first["images/000000.jpg"]


def test_an_existing_out_is_refused_and_left_alone(bench, cutout_root):
    before = _files(bench[0])
    with pytest.raises(UserError, match="already exists"):
        _build(cutout_root, bench[0])
    assert _files(bench[0]) == before
    assert not list(bench[0].parent.glob("*.partial-*"))


@pytest.mark.parametrize("case", ["no_categories", "empty_folder", "bad_counts"])
def test_bad_inputs_are_one_line_errors_from_the_cli(case, tmp_path, capsys):
    objects = tmp_path / "objects"
    objects.mkdir()
    extra = []
    if case == "no_categories":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(objects / "loose.png")
    elif case == "bad_counts":
        extra = ["--min-objects", "4", "--max-objects", "2"]
    out = tmp_path / "out"
    code = main(["data", "scenes", "--out", str(out), "--objects", str(objects), "--n", "4",
                 "--size", "64", "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("objssl data: error:")
    assert (str(objects) in err) if case != "bad_counts" else ("--max-objects" in err)
    assert not out.exists()


def test_the_cli_builds_a_benchmark_and_prints_its_summary(cutout_root, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["data", "scenes", "--out", str(out), "--objects", str(cutout_root), "--n", "4",
                 "--size", "48", "--seed", "3", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "4 scenes, 3 categories" in printed and "no alpha channel 1" in printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["arguments"]["seed"] == 3 and len(list((out / "images").iterdir())) == 4
