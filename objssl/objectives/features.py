"""The per-step feature cache: each view through each branch's backbone (and neck) once, shared by all terms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["StepFeatures"]


class StepFeatures:
    """Backbone, neck and shared-head outputs of one step, computed once per (branch, view).

    Args:
        branches: ``{"online": ModuleDict, "target": ModuleDict}`` of the method.
        views: the batch's views.
        maps: names of the backbone maps any term reads.
        pooled: whether any term reads the pooled vector. Without it, the backbone stops after the
            deepest map in ``maps`` (``forward_intermediates(stop_early=True)``).
        neck: whether the branches have the shared FPN neck (``branch["neck"]``).

    The ``target`` branch always runs under ``torch.no_grad()``.
    """

    def __init__(
        self, branches: dict[str, nn.ModuleDict], views: Sequence[Tensor], *, maps: Sequence[str], pooled: bool,
        neck: bool,
    ) -> None:
        self.branches, self.views = branches, list(views)
        self.maps, self.pooled, self.has_neck = list(maps), pooled, neck
        self._memo: dict[tuple[str, int, str], Any] = {}

    def memo(self, branch: str, view: int, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` once per ``(branch, view, key)`` (under no_grad for the target)."""
        slot = (branch, view, key)
        if slot not in self._memo:
            if branch == "target":
                with torch.no_grad():
                    self._memo[slot] = fn()
            else:
                self._memo[slot] = fn()
        return self._memo[slot]

    def heads(self, branch: str, group: str) -> nn.ModuleDict:
        """The head group ``group`` (a term name or a shared group name) of ``branch``."""
        return self.branches[branch][group]

    def backbone(self, branch: str, view: int) -> Any:
        """:class:`objssl.backbones.BackboneOutput` of ``view`` (``pooled`` None unless a term needs it)."""
        bb = self.branches[branch]["backbone"]
        if self.pooled:
            return self.memo(branch, view, "backbone", lambda: bb(self.views[view]))
        return self.memo(branch, view, "backbone", lambda: bb(self.views[view], maps=self.maps, pooled=False))

    def pyramid(self, branch: str, view: int) -> dict[str, Tensor]:
        """The shared FPN neck's maps of ``view``."""
        return self.memo(branch, view, "neck", lambda: self.branches[branch]["neck"](self.backbone(branch, view).maps))

    def prefetch(self, views: Sequence[int]) -> None:
        """Run the backbone (and neck) on ``views``: all of the online branch first, then the target
        (the order the methods always used, so BatchNorm statistics update identically)."""
        for branch in ("online", "target"):
            for v in views:
                self.backbone(branch, v)
                if self.has_neck:
                    self.pyramid(branch, v)
