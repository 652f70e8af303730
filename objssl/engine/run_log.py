"""What a run reports, behind one interface: ``log.txt``, ``metrics.jsonl``, TensorBoard and tqdm.

Only the main process writes; on other ranks every call is a no-op. On resume ``metrics.jsonl`` is
cut back to the resumed step (a torn last line from a kill mid-write is dropped) and TensorBoard
purges the steps after it, so the logs always match the training state.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from objssl.config import config_to_yaml
from objssl.fileio import atomic_write

__all__ = ["RunLog", "kept_metrics_lines"]

log = logging.getLogger("objssl.train")


def kept_metrics_lines(path: str, up_to_step: int) -> tuple[list[str], int]:
    """The complete records of ``metrics.jsonl`` with ``step <= up_to_step``, and how many lines
    were unreadable (a torn last line, say) and dropped."""
    if up_to_step <= 0 or not os.path.exists(path):
        return [], 0
    kept: list[str] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if not line.endswith("\n"):  # cut off mid-write, even if it parses
                bad += 1
                continue
            if step <= up_to_step:
                kept.append(line)
    return kept, bad


class RunLog:
    """The run's reports in ``out``: open it, :meth:`step` once per optimizer step, :meth:`close`.

    Args:
        out: the run folder.
        cfg: the run's config (written to ``config.yaml``).
        start_step: the step the run starts from (0, or the resumed step).
        stop_at: the step this call of ``fit`` ends at (the progress bar's length).
        enabled: False on non-main ranks.
    """

    def __init__(self, out: str, cfg: dict[str, Any], *, start_step: int, stop_at: int, enabled: bool) -> None:
        self.enabled = enabled
        self._metrics = self._writer = self._bar = self._handler = None
        if not enabled:
            return
        t = cfg["train"]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            f.write(config_to_yaml(cfg))
        self._handler = logging.FileHandler(os.path.join(out, "log.txt"))
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("objssl")
        root.addHandler(self._handler)
        root.setLevel(logging.INFO)

        metrics_path = os.path.join(out, "metrics.jsonl")
        kept, bad = kept_metrics_lines(metrics_path, start_step)
        if bad:
            log.warning("metrics.jsonl: dropped %d unreadable line(s) (a write cut off by a kill)", bad)
        # rewritten atomically: a kill now leaves the old file, never an empty one
        atomic_write(metrics_path, lambda f: f.writelines(kept), mode="w")
        self._metrics = open(metrics_path, "a", encoding="utf-8")
        if t["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(os.path.join(out, "tb"), purge_step=start_step + 1 if start_step else None)
        if t["progress"]:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=stop_at, initial=start_step, desc=cfg["method"]["name"], dynamic_ncols=True)

    def info(self, msg: str, *args: Any) -> None:
        if self.enabled:
            log.info(msg, *args)

    def step(self, record: dict[str, Any], line: str | None = None) -> None:
        """Report one optimizer step: ``record`` (with ``step``) to metrics.jsonl, its numbers except
        ``step``/``epoch`` to TensorBoard as ``train/<key>`` (``eval/*`` keys as they are), a progress-bar tick, and ``line`` (if
        given) to log.txt."""
        if not self.enabled:
            return
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._writer is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    tag = k if k.startswith("eval/") else f"train/{k}"  # evals keep their own group
                    self._writer.add_scalar(tag, v, record["step"])
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.3g}",
                                  img_s=f"{record['img_per_s']:.1f}")
        if line is not None:
            log.info("%s", line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if self._metrics is not None:
            self._metrics.close()
        if self._handler is not None:
            logging.getLogger("objssl").removeHandler(self._handler)
            self._handler.close()
        self._metrics = self._writer = self._bar = self._handler = None
