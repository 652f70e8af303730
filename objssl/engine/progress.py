"""How far a run is, and what it has counted: saved in ``checkpoint["progress"]``, restored exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Progress", "batch_counts", "sum_over_ranks"]


@dataclass
class Progress:
    """Optimizer steps taken and the run's cumulative counts.

    ``counters`` are the per-key totals of ``batch["counters"]`` (e.g. ``views/fallback_random``:
    samples whose views fell back to random boxes), over all ranks and every step so far.
    """

    step: int = 0
    total_steps: int = 0
    images_skipped: int = 0
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def add(self, images_skipped: int, counters: dict[str, int]) -> None:
        self.images_skipped += images_skipped
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "images_skipped": self.images_skipped,
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_row": self.nonfinite_in_row,
            "counters": dict(sorted(self.counters.items())),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Progress:
        # checkpoints written before counters existed have none
        return cls(
            step=int(state["step"]),
            total_steps=int(state["total_steps"]),
            images_skipped=int(state["images_skipped"]),
            nonfinite_total=int(state["nonfinite_total"]),
            nonfinite_in_row=int(state["nonfinite_in_row"]),
            counters={str(k): int(v) for k, v in (state.get("counters") or {}).items()},
        )


def batch_counts(batch: Any) -> tuple[int, dict[str, int]]:
    """``(bad files skipped, {counter: count})`` of one collated batch."""
    if not isinstance(batch, dict):
        return 0, {}
    skipped = int(torch.as_tensor(batch.get("skipped", 0)).sum())
    counters = {str(k): int(torch.as_tensor(v).sum()) for k, v in (batch.get("counters") or {}).items()}
    return skipped, counters


def sum_over_ranks(skipped: int, counters: dict[str, int], device: torch.device) -> tuple[int, dict[str, int]]:
    """The counts of one step summed over all processes (unchanged in one process).

    Every rank batches with the same collate function, so all have the same counter keys.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return skipped, counters
    keys = sorted(counters)
    values = torch.tensor([skipped, *(counters[k] for k in keys)], dtype=torch.long, device=device)
    dist.all_reduce(values)
    total = values.tolist()
    return total[0], dict(zip(keys, total[1:]))
