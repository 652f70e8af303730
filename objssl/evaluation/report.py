"""Several evaluation results side by side: a table (text and CSV) and a figure.

The figure (matplotlib, Agg) has one panel per kind of result present: a bar chart of kNN/linear
top-1 per run, a bar chart of full-SVM mAP per run, and low-shot mAP against k (log-scaled x)
with one line per run.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from objssl.errors import UserError
from objssl.fileio import atomic_write

__all__ = ["result_rows", "format_table", "write_csv", "plot_results"]

COLUMNS = ("run", "protocol", "checkpoint", "backbone", "metric", "value")


def run_name(result: dict[str, Any], path: str) -> str:
    return result.get("name") or os.path.splitext(os.path.basename(path))[0]


def result_rows(results: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (run, metric); low-shot results give one row per k (``mAP@k``)."""
    rows = []
    for path, r in results:
        base = {"run": run_name(r, path), "protocol": r["protocol"], "checkpoint": r.get("checkpoint", ""),
                "backbone": r.get("backbone", "")}
        for metric, value in r["metrics"].items():
            if isinstance(value, dict):
                for k, v in sorted(value.items(), key=lambda kv: float(kv[0])):
                    rows.append({**base, "metric": f"{metric}@{k}", "value": v})
            else:
                rows.append({**base, "metric": metric, "value": value})
    return rows


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    cells = [list(COLUMNS)] + [[_fmt(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode="w")


def plot_results(results: list[tuple[str, dict[str, Any]]], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise UserError("the report's figure needs matplotlib: pip install 'objssl[viz]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    top1 = [(f"{run_name(r, p)}\n({r['protocol']})", r["metrics"].get("top1")) for p, r in results
            if r["protocol"] in ("knn", "linear")]
    svm = [(run_name(r, p), r["metrics"].get("mAP")) for p, r in results if r["protocol"] == "svm"]
    low = [(run_name(r, p), r["metrics"]["mAP"]) for p, r in results if r["protocol"] == "svm_low_shot"]
    if top1:
        panels.append(("top-1 (%)", "bars", top1))
    if svm:
        panels.append(("VOC07-protocol SVM mAP (%)", "bars", svm))
    if low:
        panels.append(("low-shot SVM mAP (%)", "lines", low))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4.2), squeeze=False)
    for ax, (title, how, data) in zip(axes[0], panels):
        if how == "bars":
            names = [d[0] for d in data]
            values = [d[1] if d[1] is not None else 0.0 for d in data]
            bars = ax.bar(range(len(values)), values, color="tab:blue")
            ax.set_xticks(range(len(values)), names, rotation=30, ha="right", fontsize=8)
            for b, v in zip(bars, values):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        else:
            for name, by_k in data:
                ks = sorted(by_k, key=float)
                ax.plot([float(k) for k in ks], [by_k[k] if by_k[k] is not None else float("nan") for k in ks],
                        marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("positives per class (k)")
            ax.legend(fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
