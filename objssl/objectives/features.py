"""The per-step feature cache: each view through each branch's backbone (and neck) once, shared by all terms.

Besides the batch's views, a term may add an input of its own (UniVIP's instance crops) with
:meth:`StepFeatures.add_input`; it then goes through each branch's backbone once too, under its name.
"""

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

    The ``target`` branch always runs under ``torch.no_grad()``. ``view`` is a view's index or the
    name of an input added with :meth:`add_input`.
    """

    def __init__(
        self, branches: dict[str, nn.ModuleDict], views: Sequence[Tensor], *, maps: Sequence[str], pooled: bool,
        neck: bool,
    ) -> None:
        self.branches, self.views = branches, list(views)
        self.maps, self.pooled, self.has_neck = list(maps), pooled, neck
        self._memo: dict[tuple[str, int | str, str], Any] = {}
        self._inputs: dict[str, Tensor] = {}

    def add_input(self, name: str, make: Callable[[], Tensor]) -> str:
        """Register a batch of images other than the views (``make()`` runs once per step, without
        gradient); returns ``name``, to pass as ``view`` to :meth:`backbone` and :meth:`memo`."""
        if name not in self._inputs:
            with torch.no_grad():
                self._inputs[name] = make()
        return name

    def memo(self, branch: str, view: int | str, key: str, fn: Callable[[], Any]) -> Any:
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

    def backbone(self, branch: str, view: int | str) -> Any:
        """:class:`objssl.backbones.BackboneOutput` of ``view`` (``pooled`` None unless a term needs it)."""
        bb = self.branches[branch]["backbone"]
        x = self._inputs[view] if isinstance(view, str) else self.views[view]
        if self.pooled:
            return self.memo(branch, view, "backbone", lambda: bb(x))
        return self.memo(branch, view, "backbone", lambda: bb(x, maps=self.maps, pooled=False))

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
