"""``orl_inter_roi``: ORL's inter-RoI term — a stored correspondence between a box of an image and a
box of one of its nearest-neighbour images, as two 96-pixel patches (``batch["roi_inter"]``), under
BYOL's loss with their own predictor (:class:`objssl.objectives.orl_roi.ORLRoITerm`)."""

from __future__ import annotations

from objssl.objectives.orl_roi import ORLRoITerm
from objssl.registry import OBJECTIVES

__all__ = ["ORLInterRoI"]


@OBJECTIVES.register("orl_inter_roi")
class ORLInterRoI(ORLRoITerm):
    """Args: those of :class:`~objssl.objectives.orl_roi.ORLRoITerm`."""

    name = "orl_inter_roi"
    patches = "roi_inter"
