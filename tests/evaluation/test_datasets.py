import json
import os

import numpy as np
import pytest

from objssl.errors import DataError
from objssl.evaluation.datasets import read_coco_labels, read_image_folder, read_voc


def test_image_folder_classes_and_labels(image_folders):
    train = read_image_folder(image_folders[0])
    assert train.classes == ["class0", "class1", "class2"]
    assert len(train) == 18 and np.bincount(train.labels).tolist() == [6, 6, 6]
    assert all(os.path.basename(os.path.dirname(p)) == train.classes[y] for p, y in zip(train.paths, train.labels))


def test_empty_class_folder_is_an_error_naming_it(tmp_path, image_folders):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: empty class folder"):
        read_image_folder(str(tmp_path))
    with pytest.raises(DataError, match="no class folders"):
        read_image_folder(str(tmp_path / "a"))


def test_voc_coding_and_difficult(voc_root):
    trainval, test = read_voc(voc_root, "trainval"), read_voc(voc_root, "test")
    assert trainval.classes == test.classes == ["class0", "class1", "class2"]
    assert trainval.targets.shape == (24, 3) and set(np.unique(trainval.targets)) == {0, 1}
    assert (trainval.targets.sum(1) == 1).all()
    # VOC's 0 (difficult) reads as -1 (ignore), VOC's -1 (absent) as 0
    assert (test.targets == -1).sum() == 3 and set(np.unique(test.targets)) == {-1, 0, 1}
    assert all(os.path.isfile(p) for p in test.paths)


def test_voc_missing_split_file_and_bad_line(tmp_path, voc_root):
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(voc_root, root)
    os.remove(root / "ImageSets" / "Main" / "class1_test.txt")
    with pytest.raises(DataError, match="class1_test.txt: missing split file"):
        read_voc(str(root), "test", ["class0", "class1", "class2"])
    with open(root / "ImageSets" / "Main" / "class0_trainval.txt", "a") as f:
        f.write("000099 maybe\n")
    with pytest.raises(DataError, match=r"class0_trainval.txt:25: expected"):
        read_voc(str(root), "trainval")
    with pytest.raises(DataError, match="not a VOC-layout root"):
        read_voc(str(tmp_path), "trainval")


def test_coco_multi_label(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}],
            "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5}, {"id": 2, "image_id": 1, "category_id": 2},
                            {"id": 3, "image_id": 2, "category_id": 5}, {"id": 4, "image_id": 2, "category_id": 5}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    got = read_coco_labels(str(path))
    assert got.classes == ["dog", "cat"]  # by category id
    assert got.targets.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert got.paths[0] == str(tmp_path / "a.jpg")
    data["annotations"].append({"id": 9, "image_id": 7, "category_id": 5})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="annotation 9 names an unknown image"):
        read_coco_labels(str(path))
