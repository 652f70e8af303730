"""A method made of objective terms: one backbone (+ the FPN neck a term asks for), one EMA target,
a weighted sum of terms (:mod:`objssl.objectives`).

Every view goes through each branch's backbone (and neck) once per step, whatever the number of terms
(:class:`objssl.objectives.StepFeatures`); only the deepest map any term reads is computed when no
term needs the pooled vector. State-dict layout: ``online.backbone``, ``online.neck``,
``online.<term or shared group>.<head>``, the same under ``target`` for the EMA-copied heads, and
``objectives.<term>.*`` for a term's own state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from objssl.errors import ConfigError
from objssl.methods.base import Method
from objssl.momentum import make_momentum_copy
from objssl.necks import FPNNeck
from objssl.objectives import BuildContext, Objective, StepFeatures

__all__ = ["ObjectiveMethod"]


class ObjectiveMethod(Method):
    """``terms``: ``(term, weight)`` pairs, in the order their heads are built and their losses summed."""

    def __init__(self, backbone: nn.Module, terms: Sequence[tuple[Objective, float]], *, image_size: int,
                 base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        super().__init__(base_momentum, final_momentum)
        names = [t.name for t, _ in terms]
        if not terms or len(set(names)) != len(names):
            raise ConfigError(f"{self.name}: objective terms must be given, each once (got {names})")
        self.image_size = image_size
        self.online["backbone"] = backbone
        self.maps = sorted({m for t, _ in terms for m in t.backbone_maps(backbone)})
        self.pooled = any(t.pooled for t, _ in terms)
        fpn_terms = [t for t, _ in terms if t.fpn]
        if fpn_terms:
            args = fpn_terms[0].neck_args()
            self.online["neck"] = FPNNeck(backbone.channels(), backbone.strides(), args["out_channels"],
                                          norm=args["norm"], in_features=args["in_features"])
        ctx = BuildContext(backbone, image_size, self.online["neck"] if fpn_terms else None)
        targets: dict[str, tuple[str, ...]] = {}
        self.objectives = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for term, weight in terms:
            group = term.shared_group
            if group and group not in self.online:
                self.online[group] = nn.ModuleDict(term.build_shared(ctx))
                targets[group] = term.shared_target_heads
            heads = term.build_heads(ctx)
            if heads:
                self.online[term.name] = nn.ModuleDict(heads)
                targets[term.name] = term.target_heads
            self.objectives[term.name] = term
            self.weights[term.name] = float(weight)
        self.build_target(["backbone"] + (["neck"] if fpn_terms else []))
        for group, heads in targets.items():
            if heads:
                self.target[group] = nn.ModuleDict({h: make_momentum_copy(self.online[group][h]) for h in heads})

    def views_used(self, num_views: int) -> list[int]:
        return sorted({v for t in self.objectives.values() for v in t.views_used(num_views)})

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        feats = StepFeatures({"online": self.online, "target": self.target}, batch["views"], maps=self.maps,
                             pooled=self.pooled, neck="neck" in self.online)
        feats.prefetch(self.views_used(len(batch["views"])))
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        several = len(self.objectives) > 1
        for name, term in self.objectives.items():
            out = term(batch, feats)
            loss = self.weights[name] * out["loss"]
            total = loss if total is None else total + loss
            if several:
                logs[term.loss_key or f"loss_{name}"] = out["loss"].detach()
            for key, value in out.items():
                if key != "loss":
                    logs[f"{name}/{key}" if key in logs else key] = value
        return {"loss": total, **logs}
