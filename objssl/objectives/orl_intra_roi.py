"""``orl_intra_roi``: ORL's intra-RoI term — a proposal box of an image and a jittered copy of it, as
two 96-pixel patches (``batch["roi_intra"]``), under BYOL's loss with their own predictor
(:class:`objssl.objectives.orl_roi.ORLRoITerm`)."""

from __future__ import annotations

from objssl.objectives.orl_roi import ORLRoITerm
from objssl.registry import OBJECTIVES

__all__ = ["ORLIntraRoI"]


@OBJECTIVES.register("orl_intra_roi")
class ORLIntraRoI(ORLRoITerm):
    """Args: those of :class:`~objssl.objectives.orl_roi.ORLRoITerm`."""

    name = "orl_intra_roi"
    patches = "roi_intra"
