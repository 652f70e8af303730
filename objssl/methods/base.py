"""What every method is: an online branch, an EMA target branch, a loss, and its views.

A method is an ``nn.Module`` with

* ``online``: ``nn.ModuleDict`` of trained parts (``backbone``, ``projector``, ``predictor``, ...);
* ``target``: ``nn.ModuleDict`` of EMA copies of some of those parts (never the predictor), built
  eagerly in ``__init__`` by :meth:`Method.build_target`;
* ``forward(batch) -> dict`` with a scalar ``"loss"`` and other scalars to log;
* ``build_transform()`` giving the dataset's ``PIL.Image → sample dict`` transform;
* ``update_target(step, total_steps)`` called by the trainer after every optimizer step.

State-dict keys therefore read ``online.backbone.model.<timm key>`` and
``target.backbone.model.<timm key>``, which is what exporters rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn

from objssl.momentum import cosine_momentum, ema_update, make_momentum_copy

__all__ = ["Method"]


class Method(nn.Module):
    """Base class of the pretraining methods (see the module docstring)."""

    #: registry name, set by subclasses
    name: str = ""

    def __init__(self, base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        super().__init__()
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum
        self.online = nn.ModuleDict()
        self.target = nn.ModuleDict()
        self.momentum = base_momentum

    def build_target(self, parts: Iterable[str]) -> None:
        """Make the EMA target: frozen copies of the named online parts, built now."""
        for part in parts:
            self.target[part] = make_momentum_copy(self.online[part])

    def update_target(self, step: int, total_steps: int) -> float:
        """EMA update after optimizer step ``step`` (0-based); returns the momentum used."""
        self.momentum = cosine_momentum(step, total_steps, self.base_momentum, self.final_momentum)
        for part, teacher in self.target.items():
            ema_update(teacher, self.online[part], self.momentum)
        return self.momentum

    @property
    def backbone(self) -> nn.Module:
        return self.online["backbone"]

    def build_transform(self) -> Callable[[Any], dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must define build_transform()")

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")
