"""What an objective term is: heads it owns, what it needs from a batch and a backbone, a loss.

A method (:class:`objssl.methods.objective_method.ObjectiveMethod`) is one backbone (plus the FPN
neck when a term asks for one), one EMA target and a weighted list of terms. A term

* declares what it needs: batch fields (:attr:`Objective.needs`, a subset of :data:`BATCH_NEEDS`,
  and :attr:`Objective.min_views`) and backbone outputs (:meth:`Objective.backbone_maps`,
  :attr:`Objective.pooled`, :attr:`Objective.fpn`);
* builds its heads (:meth:`Objective.build_heads`); the method puts them into ``online[<term>]`` and
  EMA copies of :attr:`Objective.target_heads` into ``target[<term>]``. Heads several terms use (SlotCon's
  projector and prototypes) form a shared group: ``online[<shared_group>]``, built once by the first term
  of the group (:meth:`Objective.build_shared`), with the group's arguments (:attr:`Objective.shared_args`)
  equal in every term of it;
* keeps what is not trained but is state (SlotCon's centre) as its own buffers: ``objectives.<term>.*``;
* returns ``{"loss": scalar, ...other scalars to log}`` from :meth:`Objective.forward`, reading backbone
  and neck outputs from the step's :class:`objssl.objectives.features.StepFeatures`, where each view went
  through each branch once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

__all__ = ["BATCH_NEEDS", "BuildContext", "Objective"]

#: what a term may need from a batch: the views, boxes carried through them (``boxes``, ``box_mask``,
#: ``box_ids``), view overlaps (``overlap``, ``overlap_valid``, ``flips``), ``instances`` (the image on a
#: canvas with the boxes on it, to cut instance crops from: UniVIP), ``neighbours`` (ORL's stage 3, from
#: :class:`objssl.data.neighbour_pairs.NeighbourPairDataset`: ``roi_intra`` and ``roi_inter``, float
#: ``[B, 2, 3, P, P]`` normalised patch pairs — a box and its jitter, a stored box pair of the image and one
#: of its nearest neighbours —, ``neighbour`` long ``[B]`` the neighbour's index in the correspondence
#: store, ``roi_events`` long ``[B, len(ROI_EVENTS)]`` the counted fallbacks, totalled in ``counters``)
BATCH_NEEDS = frozenset({"views", "boxes", "overlap", "instances", "neighbours"})


@dataclass(frozen=True)
class BuildContext:
    """What a term builds its heads from: the backbone, the view size and the shared neck (or None)."""

    backbone: nn.Module
    image_size: int
    neck: nn.Module | None = None


class Objective(nn.Module):
    """Base class of the objective terms (see the module docstring).

    Subclasses set the class attributes, take their arguments as keyword-only constructor arguments
    with defaults (they are the term's config keys) and define :meth:`build_heads` and :meth:`forward`.
    """

    #: registry name; also the name of the term's head group in ``online`` / ``target``
    name: ClassVar[str] = ""
    #: batch fields it reads (subset of :data:`BATCH_NEEDS`)
    needs: ClassVar[frozenset[str]] = frozenset({"views"})
    #: fewest views it works with
    min_views: ClassVar[int] = 2
    #: True: it reads every view of the batch; False: the first ``min_views`` only
    all_views: ClassVar[bool] = False
    #: it reads the backbone's pooled vector
    pooled: ClassVar[bool] = False
    #: it reads the shared FPN neck (built from :meth:`neck_args`)
    fpn: ClassVar[bool] = False
    #: its own heads that have an EMA copy in the target
    target_heads: ClassVar[tuple[str, ...]] = ()
    #: name of a head group shared with other terms, its EMA-copied heads, and the arguments that build it
    shared_group: ClassVar[str | None] = None
    shared_target_heads: ClassVar[tuple[str, ...]] = ()
    shared_args: ClassVar[tuple[str, ...]] = ()
    #: what it reads from the backbone, in words (``objssl list objectives``)
    reads: ClassVar[str] = ""
    #: the key its loss is logged under when a method has several terms
    loss_key: ClassVar[str | None] = None

    def backbone_maps(self, backbone: nn.Module) -> list[str]:
        """Names of the backbone maps it reads (``backbone.feature_info``)."""
        return []

    def neck_args(self) -> dict[str, Any]:
        """``FPNNeck`` arguments (``out_channels``, ``norm``) for terms with ``fpn = True``."""
        return {}

    def build_shared(self, ctx: BuildContext) -> dict[str, nn.Module]:
        """The heads of :attr:`shared_group` (called once, by the first term of the group)."""
        return {}

    def build_heads(self, ctx: BuildContext) -> dict[str, nn.Module]:
        """The term's own trained heads, in the order their weights are initialised."""
        return {}

    def views_used(self, num_views: int) -> list[int]:
        return list(range(num_views if self.all_views else min(self.min_views, num_views)))

    @classmethod
    def describe(cls) -> str:
        """One line: what it needs (``objssl list objectives``)."""
        parts = [f"needs {', '.join(sorted(cls.needs))}", f">= {cls.min_views} views" + (" (uses all)" if cls.all_views else "")]
        if cls.reads:
            parts.append(f"backbone: {cls.reads}")
        return "; ".join(parts)

    def forward(self, batch: Mapping[str, Any], feats: Any) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must define forward(batch, feats)")
