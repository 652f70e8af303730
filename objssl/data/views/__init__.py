"""Box-aware multi-view sampling: V augmented views of an image with its boxes carried through.

Every view is a crop (random resized, the whole image, or the same crop as another view), an
optional horizontal flip and colour operations. Pixels and boxes go through the *same*
``torchvision.transforms.v2.functional`` calls (boxes as ``tv_tensors.BoundingBoxes``), so a box
always covers the same content in every view. Box ``i`` is the same proposal in every view; boxes not
visible enough in every box-carrying view are dropped, ``K`` are sampled per image, and the rest is
padded with a validity mask so samples batch into fixed-size tensors (:mod:`objssl.data.collate`).

The rules of each method (see docs/methods.md) are the presets in :data:`VIEW_PRESETS`:

* ``byol``: two 224 random resized crops, BYOL's asymmetric colour, no boxes.
* ``soco`` / ``soco_star`` / ``soco_c4``: view 1 the whole image at 224 (aspect not kept, boxes
  jittered with p 0.5 and ratio 0.1), view 2 a 224 crop of scale (0.5, 1) ((0.6, 1) for C4), view 3 an
  independent 112 crop (SoCo) or 192 crop plus view 4 = view 2 at 112 (SoCo*); K = 4 boxes that
  intersect every view, padded by duplicating valid boxes; the whole shared region if none is left;
  proposals pass SoCo's ``ratio3size0308post`` filter first.
* ``slotcon``: two 224 bicubic crops of scale (0.08, 1) whose overlap is at least 1 % of view 2
  (view 1 drawn once, view 2 re-drawn up to 10 times).
* ``univip``: two 224 bicubic crops of scale (0.08, 1) whose overlap (edges >= 64 px) fully contains
  K = 4 proposals (after UniVIP's filter: sides >= 64, aspect <= 3, IoU <= 0.5), 20 tries; otherwise
  the best pair, topped up with random boxes inside the overlap; plus the "instances": the image on a
  448 canvas (its own colour draw) with the K boxes on it, for 96×96 crops cut on the device.

Box sets: by default (``box_sets="shared"``) one set must be visible in all views (identity across every
view); ``box_sets="per_pair"`` is SoCo's own rule, which the SoCo methods use: each pair of view 0 with
another view draws its own set, and view 0 carries one set per pair
(:mod:`~objssl.data.views.pair_selection`). A view may cut zero squares inside its boxes
(``BoxViewSpec.cutout_p``, SoCo's box cutout, :mod:`~objssl.data.views.box_cutout`). Every retry loop is
bounded, and no sample ever leaves with an invalid overlap (SlotCon and UniVIP could): after
``max_tries`` the second crop is re-drawn inside the first and the event is counted. SoCo*'s view 4
shares view 2's flip (the official code flips it independently; the boxes follow either way).

All randomness comes from torch's global RNG, which :class:`objssl.data.dataset.ImageDataset` seeds
per sample, so views are reproducible and independent of the number of loader workers.

Modules, one job each: :mod:`~objssl.data.views.view_spec` (one view's geometry and colour),
:mod:`~objssl.data.views.presets` (the method rules and the batch fields they provide),
:mod:`~objssl.data.views.crops` (each view's crop and the overlap rule),
:mod:`~objssl.data.views.box_geometry` (intersections, visibility, jitter, top-up, overlap boxes),
:mod:`~objssl.data.views.box_selection` (the ``K`` boxes, fallbacks, padding),
:mod:`~objssl.data.views.pair_selection` (SoCo's per-pair sets),
:mod:`~objssl.data.views.box_cutout` (SoCo's box cutout),
:mod:`~objssl.data.views.events` (the counted fallbacks),
:mod:`~objssl.data.views.instances` (UniVIP's instance canvas),
:mod:`~objssl.data.views.view_maker` (one view's pixels, or its parameters for the training device) and
:mod:`~objssl.data.views.box_aware_views` (the transform).

With ``augment_on="device"`` the same draws are made and the views' pixels are left to the training
device (:mod:`objssl.data.device`, docs/device_views.md).
"""

from objssl.data.views.box_aware_views import BoxAwareViews
from objssl.data.views.box_geometry import overlap_in_view, random_boxes_in_region
from objssl.data.views.events import STAT_KEYS
from objssl.data.views.presets import VIEW_PRESETS, preset_provides
from objssl.data.views.view_spec import BoxViewSpec

__all__ = [
    "BoxViewSpec",
    "BoxAwareViews",
    "VIEW_PRESETS",
    "STAT_KEYS",
    "preset_provides",
    "overlap_in_view",
    "random_boxes_in_region",
]
