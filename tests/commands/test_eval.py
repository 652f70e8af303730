"""``objssl eval knn|linear|svm|report`` end to end on tiny labelled sets of real photo crops."""

import importlib.util
import json
import os

import pytest

from objssl.cli import main


def _labelled_images():
    path = os.path.join(os.path.dirname(__file__), "..", "evaluation", "labelled_images.py")
    spec = importlib.util.spec_from_file_location("labelled_images_for_" + __name__.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_images = _labelled_images()
make_image_folder = _images.make_image_folder
make_voc_root = _images.make_voc_root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_cli")
    return {"train": make_image_folder(base / "train", per_class=5), "val": make_image_folder(base / "val", per_class=2,
                                                                                               offset=30),
            "voc": make_voc_root(base / "voc"), "out": base / "out"}


COMMON = ["random", "--backbone", "test_resnet", "--image-size", "32", "--workers", "0", "--no-progress"]


def test_protocols_and_report(data, capsys):
    out = data["out"]
    assert main(["eval", "knn", *COMMON, "--train", data["train"], "--val", data["val"], "--k", "3",
                 "-o", str(out / "knn.json")]) == 0
    knn = json.loads((out / "knn.json").read_text())
    assert knn["protocol"] == "knn" and knn["backbone"] == "test_resnet" and knn["k"] == 3
    assert set(knn["metrics"]) == {"top1", "top5"} and knn["data"]["train"]["images"] == 15
    assert not knn["data"]["train"]["from_cache"]
    assert main(["eval", "linear", *COMMON, "--train", data["train"], "--val", data["val"],
                 "-o", str(out / "linear.json")]) == 0
    linear = json.loads((out / "linear.json").read_text())
    assert linear["data"]["train"]["from_cache"] and "C" in linear  # the kNN run's features, read back
    assert main(["eval", "svm", *COMMON, "--voc", data["voc"], "-o", str(out / "svm.json")]) == 0
    svm = json.loads((out / "svm.json").read_text())
    assert svm["feature"] == "feat5" and svm["cost_selection"].startswith("heldout")
    assert 0 <= svm["metrics"]["mAP"] <= 100 and svm["data"]["test"]["images"] == 15
    assert main(["eval", "svm", *COMMON, "--voc", data["voc"], "--low-shot", "--shots", "1,2",
                 "--cost-selection", "test", "-o", str(out / "low.json")]) == 0
    low = json.loads((out / "low.json").read_text())
    assert low["protocol"] == "svm_low_shot" and set(low["metrics"]["mAP"]) == {"1", "2"}
    assert low["cost_selection"].startswith("test")
    capsys.readouterr()
    assert main(["eval", "report", *(str(out / f) for f in ("knn.json", "linear.json", "svm.json", "low.json")),
                 "-o", str(out / "report.png"), "--csv", str(out / "report.csv")]) == 0
    table = capsys.readouterr().out
    assert "mAP@2" in table and os.path.getsize(out / "report.png") > 1000
    assert len((out / "report.csv").read_text().splitlines()) == 1 + 2 + 2 + 1 + 2


def test_bad_input_is_one_line(data, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    assert main(["eval", "knn", *COMMON, "--train", str(tmp_path), "--val", data["val"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{tmp_path / 'b'}: empty class folder" in err
    assert main(["eval", "knn", *COMMON, "--train", data["train"], "--val", data["val"], "--k", "40"]) == 2
    assert "15 train images, fewer than k=40" in capsys.readouterr().err
    assert main(["eval", "svm", *COMMON, "--voc", str(tmp_path)]) == 2
    assert "not a VOC-layout root" in capsys.readouterr().err
