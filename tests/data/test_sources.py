"""list_images / describe_source over folders, list files and COCO jsons built in tmp_path."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from objssl.images.sources import IMAGE_EXTENSIONS, describe_source, list_images
from objssl.errors import DataError, UserError


def _img(path: Path) -> Path:
    """A tiny real image file at ``path`` (format from the extension; parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM"}.get(
        ext, ext.lstrip(".").upper()
    )
    Image.new("L" if ext == ".pgm" else "RGB", (4, 4)).save(path, format=fmt)
    return path


def _coco(path: Path, file_names: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [{"id": i, "file_name": n, "width": 4, "height": 4} for i, n in enumerate(file_names)]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return path


# ---------------------------------------------------------------- folders


def test_folder_recursive_sorted_case_insensitive_absolute(tmp_path):
    names = ["b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.BMP", "e.webp", "f.TIF", "g.tiff",
             "h.ppm", "i.pgm"]
    for n in names:
        _img(tmp_path / n)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "labels.json").write_text("{}")
    out = list_images(tmp_path)
    assert out == sorted(str(tmp_path / n) for n in names)
    assert all(os.path.isabs(p) for p in out)


def test_every_listed_extension_is_found(tmp_path):
    for i, ext in enumerate(IMAGE_EXTENSIONS):
        _img(tmp_path / f"x{i}{ext}")
    assert len(list_images(tmp_path)) == len(IMAGE_EXTENSIONS)


def test_folder_skips_hidden_files_and_dirs(tmp_path):
    _img(tmp_path / "keep.jpg")
    _img(tmp_path / ".hidden.jpg")
    _img(tmp_path / ".cache" / "thumb.jpg")
    _img(tmp_path / "sub" / ".ipynb_checkpoints" / "x.png")
    assert list_images(tmp_path) == [str(tmp_path / "keep.jpg")]


def test_folder_relative_path_and_symlink_loop(tmp_path, monkeypatch):
    _img(tmp_path / "data" / "a.jpg")
    os.symlink(tmp_path / "data", tmp_path / "data" / "loop")  # must not recurse forever
    monkeypatch.chdir(tmp_path)
    assert list_images("data") == [str(tmp_path / "data" / "a.jpg")]  # the loop is walked once


def test_folder_order_is_deterministic(tmp_path):
    for n in ["z.jpg", "m/a.jpg", "a.jpg", "m/z.jpg"]:
        _img(tmp_path / n)
    assert list_images(tmp_path) == list_images(str(tmp_path)) == sorted(list_images(tmp_path))


def test_empty_folder_error_names_path_and_extensions(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DataError) as info:
        list_images(tmp_path)
    msg = str(info.value)
    assert f"no images found under {tmp_path}" in msg and ".jpg" in msg and ".png" in msg
    assert "\n" not in msg


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist: .*nowhere"):
        list_images(tmp_path / "nowhere")


def test_single_image_and_unknown_file_kind(tmp_path):
    assert list_images(_img(tmp_path / "one.png")) == [str(tmp_path / "one.png")]
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported data source .*data.csv"):
        list_images(tmp_path / "data.csv")


def test_data_error_is_a_user_error():
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


# ---------------------------------------------------------------- list files


def test_list_file_relative_absolute_comments_blank_lines(tmp_path):
    a = _img(tmp_path / "imgs" / "a.jpg")
    b = _img(tmp_path / "elsewhere" / "b.png")
    lst = tmp_path / "imgs" / "train.txt"
    lst.write_text(f"# my split\n\n{b}\n  a.jpg  \n\n# end\n")
    assert list_images(lst) == [str(b), str(a)]  # the file's order is kept


def test_list_file_with_image_root(tmp_path):
    _img(tmp_path / "root" / "x" / "a.jpg")
    lst = tmp_path / "lists" / "all.lst"
    lst.parent.mkdir()
    lst.write_text("x/a.jpg\n")
    expected = [str(tmp_path / "root" / "x" / "a.jpg")]
    assert list_images(lst, image_root=tmp_path / "root") == expected


def test_list_file_some_missing_are_dropped_with_warning(tmp_path, caplog):
    _img(tmp_path / "a.jpg")
    lst = tmp_path / "l.txt"
    lst.write_text("a.jpg\ngone1.jpg\ngone2.jpg\n")
    with caplog.at_level(logging.WARNING, logger="objssl.images.sources"):
        assert list_images(lst) == [str(tmp_path / "a.jpg")]
    assert "2 of 3 images" in caplog.text and "gone1.jpg" in caplog.text


def test_list_file_all_missing_is_an_error_naming_the_first_few(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"missing{i}.jpg\n" for i in range(6)))
    with pytest.raises(DataError) as info:
        list_images(lst)
    msg = str(info.value)
    assert "none of the 6 images" in msg and str(lst) in msg
    assert "missing0.jpg" in msg and "missing2.jpg" in msg and "missing5.jpg" not in msg


def test_empty_list_file(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("# only a comment\n\n   \n")
    with pytest.raises(DataError, match=f"list file {lst} has no entries"):
        list_images(lst)


def test_image_root_must_be_a_folder(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("a.jpg\n")
    with pytest.raises(DataError, match="image_root is not a folder"):
        list_images(lst, image_root=tmp_path / "nope")


# ---------------------------------------------------------------- COCO json


def test_coco_next_to_json(tmp_path):
    _img(tmp_path / "JPEGImages" / "a.jpg")
    _img(tmp_path / "JPEGImages" / "b.jpg")
    ann = _coco(tmp_path / "annotations.json", ["JPEGImages/b.jpg", "JPEGImages/a.jpg"])
    assert list_images(ann) == [str(tmp_path / "JPEGImages" / n) for n in ("b.jpg", "a.jpg")]


def test_coco_sibling_split_folder(tmp_path):
    for n in ("1.jpg", "2.jpg"):
        _img(tmp_path / "coco" / "train2017" / n)
    _img(tmp_path / "coco" / "images" / "1.jpg")  # a decoy: the split folder comes first
    ann = _coco(tmp_path / "coco" / "annotations" / "instances_train2017.json", ["1.jpg", "2.jpg"])
    expected = [str(tmp_path / "coco" / "train2017" / n) for n in ("1.jpg", "2.jpg")]
    assert list_images(ann) == expected
    assert describe_source(ann) == (
        f"COCO json {ann} with 2 images (images under {tmp_path / 'coco' / 'train2017'})"
    )


def test_coco_images_folder_fallback(tmp_path):
    _img(tmp_path / "images" / "p.png")
    ann = _coco(tmp_path / "annotations" / "val.json", ["p.png"])
    assert list_images(ann) == [str(tmp_path / "images" / "p.png")]


def test_coco_image_root_wins(tmp_path):
    _img(tmp_path / "annotations" / "a.jpg")  # would be found next to the json
    _img(tmp_path / "mine" / "a.jpg")
    ann = _coco(tmp_path / "annotations" / "instances_val2017.json", ["a.jpg"])
    assert list_images(ann, image_root=tmp_path / "mine") == [str(tmp_path / "mine" / "a.jpg")]


def test_coco_some_missing_dropped_all_missing_error(tmp_path, caplog):
    _img(tmp_path / "val2017" / "a.jpg")
    ann = _coco(tmp_path / "annotations" / "instances_val2017.json", ["a.jpg", "b.jpg"])
    with caplog.at_level(logging.WARNING, logger="objssl.images.sources"):
        assert list_images(ann) == [str(tmp_path / "val2017" / "a.jpg")]
    assert "1 of 2 images" in caplog.text

    lost = _coco(tmp_path / "annotations" / "instances_test2017.json", ["x.jpg", "y.jpg"])
    with pytest.raises(DataError) as info:
        list_images(lost)
    msg = str(info.value)
    assert str(lost) in msg and "'x.jpg'" in msg and "test2017" in msg and "image_root" in msg


def test_coco_all_missing_under_given_root(tmp_path):
    (tmp_path / "root").mkdir()
    ann = _coco(tmp_path / "a.json", ["x.jpg"])
    with pytest.raises(DataError, match="none of the 1 images listed in COCO json .*x.jpg"):
        list_images(ann, image_root=tmp_path / "root")


def test_malformed_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"file_name": "a.jpg",}\n]}')
    with pytest.raises(DataError, match=r"bad.json is not valid JSON \(.* line 2"):
        list_images(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"annotations": []}, "no 'images' list"),
        ([1, 2, 3], "no 'images' list"),
        ({"images": []}, "empty 'images' list"),
        ({"images": [{"file_name": "a.jpg"}, {"id": 2}]}, r"images\[1\] has no 'file_name'"),
    ],
)
def test_json_that_is_not_usable_coco(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message):
        list_images(path)


# ---------------------------------------------------------------- describe_source


def test_describe_source(tmp_path):
    for n in ("a.jpg", "b.png", "c/d.jpg"):
        _img(tmp_path / "f" / n)
    assert describe_source(tmp_path / "f") == f"folder {tmp_path / 'f'} with 3 images"
    lst = tmp_path / "f" / "one.txt"
    lst.write_text("a.jpg\n")
    assert describe_source(lst) == f"list file {lst} with 1 image"
    assert describe_source(tmp_path / "f" / "b.png") == f"single image {tmp_path / 'f' / 'b.png'}"
    with pytest.raises(DataError):
        describe_source(tmp_path / "missing")
