"""Objective terms: the losses a method is a weighted list of (``objssl list objectives``).

See :mod:`objssl.objectives.base` for what a term is; plugins register more through the
``objssl.objectives`` entry-point group.
"""

from objssl.objectives.base import BATCH_NEEDS, BuildContext, Objective
from objssl.objectives.byol_global import BYOLGlobal
from objssl.objectives.features import StepFeatures
from objssl.objectives.orl_inter_roi import ORLInterRoI
from objssl.objectives.orl_intra_roi import ORLIntraRoI
from objssl.objectives.slotcon_pixel import SlotConPixel
from objssl.objectives.slotcon_slots import SlotConSlots
from objssl.objectives.soco_boxes import SoCoBoxes
from objssl.objectives.soco_c4_boxes import SoCoC4Boxes
from objssl.objectives.univip_instance_ot import UniVIPInstanceOT
from objssl.objectives.univip_scene_instance import UniVIPSceneInstance

__all__ = [
    "BATCH_NEEDS", "BuildContext", "Objective", "StepFeatures",
    "BYOLGlobal", "SoCoBoxes", "SoCoC4Boxes", "SlotConPixel", "SlotConSlots",
    "UniVIPSceneInstance", "UniVIPInstanceOT", "ORLIntraRoI", "ORLInterRoI",
]
