import csv

import pytest

from objssl.errors import UserError
from objssl.evaluation.report import format_table, plot_results, result_rows, write_csv
from objssl.evaluation.results import read_result, write_result


def test_rows_table_csv_and_figure(tmp_path):
    runs = {
        "knn_a": {"protocol": "knn", "checkpoint": "a.pth", "backbone": "resnet18", "metrics": {"top1": 61.5, "top5": 90.0}},
        "svm_a": {"protocol": "svm", "checkpoint": "a.pth", "backbone": "resnet18", "metrics": {"mAP": 70.25}},
        "low_a": {"protocol": "svm_low_shot", "checkpoint": "a.pth", "backbone": "resnet18",
                  "metrics": {"mAP": {"2": 40.0, "1": 30.0, "16": float("nan")}}},
    }
    results = []
    for name, r in runs.items():
        write_result(str(tmp_path / f"{name}.json"), r)
        results.append((str(tmp_path / f"{name}.json"), read_result(str(tmp_path / f"{name}.json"))))
    rows = result_rows(results)
    assert [(r["run"], r["metric"], r["value"]) for r in rows] == [
        ("knn_a", "top1", 61.5), ("knn_a", "top5", 90.0), ("svm_a", "mAP", 70.25),
        ("low_a", "mAP@1", 30.0), ("low_a", "mAP@2", 40.0), ("low_a", "mAP@16", None)]  # NaN is written as null
    table = format_table(rows)
    assert "70.25" in table and "n/a" in table
    write_csv(rows, str(tmp_path / "r.csv"))
    with open(tmp_path / "r.csv") as f:
        assert list(csv.DictReader(f))[2]["value"] == "70.25"
    plot_results(results, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_result_errors(tmp_path):
    (tmp_path / "x.json").write_text('{"protocol": "nope", "metrics": {}}')
    with pytest.raises(UserError, match="x.json: not an objssl eval result"):
        read_result(str(tmp_path / "x.json"))
    with pytest.raises(UserError, match="no such result file"):
        read_result(str(tmp_path / "y.json"))
