"""The result file of one evaluation run (``-o OUT.json``), written atomically and read back for reports.

Layout::

    {"protocol": "knn" | "linear" | "svm" | "svm_low_shot",
     "checkpoint": CKPT as given, "backbone": timm name, "data": {...what was read...},
     "metrics": {"top1": %, "top5": %} | {"mAP": %} | {"mAP": {"1": %, "2": %, ...}},
     ...protocol details (k, temperature, chosen C, cost selection, feature kind, sizes, skipped images)}
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from objssl.errors import UserError
from objssl.fileio import atomic_write

__all__ = ["PROTOCOLS", "write_result", "read_result"]

PROTOCOLS = ("knn", "linear", "svm", "svm_low_shot")


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN/Inf become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    return value


def write_result(path: str, result: dict[str, Any]) -> None:
    text = json.dumps(_plain(result), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def read_result(path: str) -> dict[str, Any]:
    """A result file, or a one-line error naming it."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such result file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable result json ({exc})") from None
    if not isinstance(data, dict) or data.get("protocol") not in PROTOCOLS or not isinstance(data.get("metrics"), dict):
        raise UserError(f"{path}: not an objssl eval result (needs 'protocol' in {PROTOCOLS} and 'metrics')")
    return data
