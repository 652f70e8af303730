"""Box-aware multi-view sampling: V augmented views of an image with its boxes carried through.

Every view is a crop (random resized, the whole image, or the same crop as another view), an
optional horizontal flip and colour operations. Pixels and boxes go through the *same*
``torchvision.transforms.v2.functional`` calls (boxes as ``tv_tensors.BoundingBoxes``), so a box
always covers the same content in every view. Box ``i`` is the same proposal in every view; boxes not
visible enough in every box-carrying view are dropped, ``K`` are sampled per image, and the rest is
padded with a validity mask so samples batch into fixed-size tensors (:mod:`objssl.data.collate`).

The rules of each method (METHODS.md) are the presets in :data:`VIEW_PRESETS`:

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
  the best pair, topped up with random boxes inside the overlap.

Differences from the official code, on purpose: SoCo samples its 1–2 and 1–3 box sets separately; here
one set must be visible in all views (identity across every view is the contract). Every retry loop is
bounded, and no sample ever leaves with an invalid overlap (SlotCon and UniVIP could): after
``max_tries`` the second crop is re-drawn inside the first and the event is counted. SoCo*'s view 4
shares view 2's flip (the official code flips it independently; the boxes follow either way).

All randomness comes from torch's global RNG, which :class:`objssl.data.dataset.ImageDataset` seeds
per sample, so views are reproducible and independent of the number of loader workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from objssl.data.transforms import BYOL_VIEWS, IMAGENET_MEAN, IMAGENET_STD, ViewAugmentation, photometric_transform
from objssl.proposals.filters import soco_filter, univip_filter

log = logging.getLogger(__name__)

__all__ = ["BoxViewSpec", "BoxAwareViews", "VIEW_PRESETS", "STAT_KEYS", "overlap_in_view", "random_boxes_in_region"]

#: per-sample event counters, in the order of ``sample["view_events"]``
STAT_KEYS = ("no_proposals", "fallback_random", "fallback_whole", "overlap_resampled", "tries_exhausted")


@dataclass(frozen=True)
class BoxViewSpec:
    """Geometry and colour of one view.

    Attributes:
        size: output size, ``int`` (square) or ``(height, width)``.
        crop: ``"rrc"`` random resized crop, ``"whole"`` the whole image resized (aspect not kept),
            or ``"same:J"`` view ``J``'s geometry (crop and flip) resized to ``size`` (SoCo*'s view 4:
            view 2's pixels before colour, resized), with this view's own colour draw.
        scale, ratio: random resized crop ranges (area fraction, aspect ratio).
        hflip_p: probability of a horizontal flip.
        color: colour operations (:class:`objssl.data.transforms.ViewAugmentation`; only its colour
            fields are used).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        box_jitter: SoCo's jitter ratio (0: none): x1, y1 move by U(-r, r) times w, h and w, h scale
            by 1 + U(-r, r), each box with probability ``box_jitter_p``, in this view only.
        carries_boxes: whether boxes must be visible in this view (and are output for it).
    """

    size: int | tuple[int, int] = 224
    crop: str = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    color: ViewAugmentation = field(default_factory=ViewAugmentation)
    interpolation: str = "bilinear"
    box_jitter: float = 0.0
    box_jitter_p: float = 0.5
    carries_boxes: bool = True

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    def source_view(self) -> int | None:
        """``J`` for ``crop="same:J"``, else None."""
        if self.crop.startswith("same:"):
            return int(self.crop.split(":", 1)[1])
        return None


def _byol_color(view: int) -> ViewAugmentation:
    return BYOL_VIEWS[view]


# --------------------------------------------------------------------------------------- presets
_SOCO_V1 = BoxViewSpec(224, "whole", color=_byol_color(0), box_jitter=0.1, box_jitter_p=0.5)
_SOCO_V2 = BoxViewSpec(224, "rrc", scale=(0.5, 1.0), color=_byol_color(1))
_SLOT_V1 = BoxViewSpec(224, "rrc", scale=(0.08, 1.0), color=_byol_color(0), interpolation="bicubic",
                       carries_boxes=False)
_UNIVIP_V1 = replace(_SLOT_V1, carries_boxes=True)

VIEW_PRESETS: dict[str, dict[str, Any]] = {
    "byol": dict(views=(BoxViewSpec(224, color=_byol_color(0), carries_boxes=False),
                        BoxViewSpec(224, color=_byol_color(1), carries_boxes=False)), k=0),
    "soco": dict(
        views=(_SOCO_V1, _SOCO_V2, replace(_SOCO_V2, size=112)),
        k=4, min_visible=0.0, min_boxes=2, max_tries=5, pad="duplicate", fallback="whole",
        box_filter=soco_filter,
    ),
    "soco_star": dict(
        views=(_SOCO_V1, _SOCO_V2, replace(_SOCO_V2, size=192), BoxViewSpec(112, "same:1", color=_byol_color(1))),
        k=4, min_visible=0.0, min_boxes=2, max_tries=5, pad="duplicate", fallback="whole",
        box_filter=soco_filter,
    ),
    "soco_c4": dict(
        views=(_SOCO_V1, replace(_SOCO_V2, scale=(0.6, 1.0))),
        k=4, min_visible=0.0, min_boxes=2, max_tries=5, pad="duplicate", fallback="whole",
        box_filter=soco_filter,
    ),
    "slotcon": dict(
        views=(_SLOT_V1, replace(_SLOT_V1, color=_byol_color(1))),
        k=0, min_overlap_frac=0.01, max_tries=10, keep_first_crop=True,
    ),
    "univip": dict(
        views=(_UNIVIP_V1, replace(_UNIVIP_V1, color=_byol_color(1))),
        k=4, min_visible=1.0, min_boxes=4, min_overlap_side=64, max_tries=20, pad="duplicate",
        fallback="random", fallback_min_size=64, box_filter=univip_filter,
    ),
}


# ------------------------------------------------------------------------------------- geometry
def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def _intersect(a: Tensor, b: Tensor) -> Tensor:
    """Intersection rectangles of ``a [..., 4]`` and ``b [..., 4]`` (may be empty: x2 < x1)."""
    return torch.cat([torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])], dim=-1)


def random_boxes_in_region(
    region: Tensor,
    n: int,
    existing: Tensor,
    *,
    min_size: float = 64.0,
    max_aspect: float = 3.0,
    iou_thresh: float = 0.5,
    candidates: int = 100,
) -> Tensor:
    """UniVIP's top-up: ``n`` random boxes inside ``region`` (``[4]``), each with sides >= ``min_size``
    (capped by the region), aspect <= ``max_aspect`` and IoU < ``iou_thresh`` with the boxes kept so far;
    ``candidates`` draws per box, the lowest-IoU one if none qualifies. ``-> float [n, 4]``."""
    from objssl.proposals.builtin import random_boxes

    x1, y1, x2, y2 = (float(v) for v in region)
    rw, rh = x2 - x1, y2 - y1
    kept = existing.reshape(-1, 4).float()
    out = []
    for _ in range(n):  # n <= K (4): a bounded top-up, not a per-box loop in the step
        side = min(min_size, rw, rh)
        lo = min(1.0, side / max(math.sqrt(rw * rh), 1e-6))
        cand = random_boxes(rw, rh, candidates, min_size=side, max_aspect=max_aspect,
                            scale=(lo, 1.0), within=(x1, y1, x2, y2))
        iou = box_iou(cand, kept).max(dim=1).values if len(kept) else torch.zeros(len(cand))
        ok = torch.nonzero(iou < iou_thresh).reshape(-1)
        pick = cand[ok[0]] if len(ok) else cand[iou.argmin()]
        out.append(pick)
        kept = torch.cat([kept, pick[None]])
    return torch.stack(out) if out else torch.zeros(0, 4)


def overlap_in_view(crop_i: Tensor, crop_j: Tensor, flip_i: bool, size_i: tuple[int, int]) -> Tensor:
    """The intersection of crop ``i`` with crop(s) ``j`` in view ``i``'s pixels.

    Args:
        crop_i: ``[4]`` view ``i``'s crop, xyxy in image pixels (integer-valued, as sampled).
        crop_j: ``[4]`` or ``[N, 4]`` other crops, xyxy in image pixels.
        flip_i: whether view ``i`` is horizontally flipped.
        size_i: view ``i``'s ``(height, width)``.

    Returns:
        ``float [4]`` / ``[N, 4]``, xyxy in view ``i`` (mapped by the same v2 resized-crop and flip
        as the pixels); all zeros where the crops do not overlap.
    """
    crop_j = torch.as_tensor(crop_j, dtype=torch.float32)
    inter = _intersect(crop_i.float().expand_as(crop_j), crop_j)
    empty = (inter[..., 2] <= inter[..., 0]) | (inter[..., 3] <= inter[..., 1])
    x1, y1, x2, y2 = (int(round(float(c))) for c in crop_i)
    # the canvas only bounds clamping, and every intersection lies inside crop i
    bb = tv_tensors.BoundingBoxes(inter.reshape(-1, 4), format="XYXY", canvas_size=(y2, x2))
    bb = TF.resized_crop(bb, y1, x1, y2 - y1, x2 - x1, list(size_i))
    if flip_i:
        bb = TF.horizontal_flip(bb)
    out = bb.as_subclass(Tensor).reshape(inter.shape).float()
    return torch.where(empty[..., None], torch.zeros_like(out), out)


class BoxAwareViews:
    """A dataset transform: ``(PIL image, meta) -> dict`` of V views with boxes carried through.

    Args:
        views: one :class:`BoxViewSpec` per view.
        k: boxes per image (0: no boxes, e.g. BYOL, SlotCon).
        min_visible: a box counts as visible in a view when ``area(box ∩ crop) / area(box)`` is at
            least this; 0 means "intersects at all" (SoCo), 1 "fully inside" (UniVIP).
        min_boxes: an attempt is accepted once this many boxes are visible in every view.
        min_overlap_frac: views 0 and 1 must overlap by at least this fraction of view 1's crop area.
        min_overlap_side: the overlap of views 0 and 1 must have both sides at least this (pixels).
        max_tries: crop attempts before falling back (always bounded).
        keep_first_crop: draw view 0's crop once and retry only the other views (SlotCon retries
            view 2 against a fixed view 1, so view 1's crop distribution stays unconditioned);
            otherwise every try redraws all views (UniVIP's scene pairs, SoCo).
        pad: ``"duplicate"`` (repeat valid boxes, SoCo) or ``"zeros"`` (mask False) up to ``k``.
        fallback: ``"random"`` (top up with random boxes inside the shared region, UniVIP) or
            ``"whole"`` (the shared region as one box, SoCo) when fewer than ``min_boxes`` remain.
        fallback_min_size: minimum side of random fallback boxes (capped by the region).
        proposals: object with ``boxes_for(path) -> Tensor[M, 4]`` (a ProposalCache or the
            ``precomputed`` source); otherwise boxes are passed to the call.
        box_filter: ``(boxes, (W, H)) -> boxes`` applied to an image's proposals (e.g.
            :func:`objssl.proposals.filters.soco_filter`).
        normalize: ImageNet mean/std normalisation (off: float views in [0, 1]).

    Output of ``views(image, meta=None, boxes=None)``:
        ``views``: list of ``float [3, h_v, w_v]``; ``boxes``: list of ``float [K, 4]`` (xyxy in each
        view's pixels, clipped, flipped with the view; ``[K, 4]`` zeros for views without boxes);
        ``box_mask``: ``bool [K]``; ``box_ids``: ``long [K]`` (proposal index; -1 padding, -2-j random
        fallback box j, -100 the whole-region fallback); ``boxes_image``: ``float [K, 4]`` in image
        pixels; ``crops``: ``float [V, 4]`` (each view's crop in image pixels); ``flips``: ``bool [V]``;
        ``overlap``: ``float [V, V, 4]`` (crop i ∩ crop j in view i's pixels); ``overlap_valid``:
        ``bool [V, V]``; ``image_size``: ``long [2]`` (H, W); ``view_events``: ``long [5]``
        (:data:`STAT_KEYS`).
    """

    wants_meta = True

    def __init__(
        self,
        views: Sequence[BoxViewSpec],
        *,
        k: int = 4,
        min_visible: float = 0.0,
        min_boxes: int | None = None,
        min_overlap_frac: float = 0.0,
        min_overlap_side: float = 0.0,
        max_tries: int = 10,
        keep_first_crop: bool = False,
        pad: str = "duplicate",
        fallback: str = "random",
        fallback_min_size: float = 32.0,
        proposals: Any = None,
        box_filter: Callable[[Tensor, tuple[float, float]], Tensor] | None = None,
        normalize: bool = True,
    ) -> None:
        self.views = tuple(views)
        if not self.views:
            raise ValueError("BoxAwareViews: views must not be empty")
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            if spec.crop not in ("rrc", "whole") and j is None:
                raise ValueError(f"BoxAwareViews: views[{v}].crop={spec.crop!r}; use 'rrc', 'whole' or 'same:J'")
            if j is not None and not 0 <= j < v:
                raise ValueError(f"BoxAwareViews: views[{v}].crop={spec.crop!r} must name an earlier view")
        if pad not in ("duplicate", "zeros"):
            raise ValueError(f"BoxAwareViews: pad must be 'duplicate' or 'zeros', got {pad!r}")
        if fallback not in ("random", "whole"):
            raise ValueError(f"BoxAwareViews: fallback must be 'random' or 'whole', got {fallback!r}")
        if max_tries < 1:
            raise ValueError(f"BoxAwareViews: max_tries must be >= 1, got {max_tries}")
        if not 0 <= min_visible <= 1:
            raise ValueError(f"BoxAwareViews: min_visible must be in [0, 1], got {min_visible}")
        if k < 0:
            raise ValueError(f"BoxAwareViews: k must be >= 0, got {k}")
        self.k, self.min_visible = int(k), float(min_visible)
        self.min_boxes = self.k if min_boxes is None else min(int(min_boxes), self.k)
        self.min_overlap_frac, self.min_overlap_side = float(min_overlap_frac), float(min_overlap_side)
        self.max_tries, self.pad, self.fallback = int(max_tries), pad, fallback
        self.keep_first_crop = bool(keep_first_crop)
        self.fallback_min_size = float(fallback_min_size)
        self.proposals, self.box_filter, self.normalize = proposals, box_filter, normalize
        # blur kernels follow each view's own size (~10 % of its side)
        self._colour = [photometric_transform(replace(s.color, size=s.hw[0]), normalize=False) for s in self.views]
        self._norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.stats = {key: 0 for key in ("samples", *STAT_KEYS)}
        self._warned: set[str] = set()

    @classmethod
    def from_preset(cls, name: str, *, proposals: Any = None, **overrides: Any) -> BoxAwareViews:
        """The views of a method (:data:`VIEW_PRESETS`), with any argument overridden.

        ``size=S`` scales every view's size by ``S / 224`` (handy for small tests and demos).
        """
        if name not in VIEW_PRESETS:
            raise ValueError(f"no view preset {name!r}; known: {', '.join(sorted(VIEW_PRESETS))}")
        kwargs = dict(VIEW_PRESETS[name])
        size = overrides.pop("size", None)
        if size is not None:
            kwargs["views"] = tuple(
                replace(s, size=max(8, round(s.hw[0] * size / 224))) for s in kwargs["views"]
            )
        kwargs.update(overrides)
        return cls(proposals=proposals, **kwargs)

    # ---------------------------------------------------------------------------- helpers
    def _event(self, events: list[int], key: str, message: str) -> None:
        events[STAT_KEYS.index(key)] += 1
        self.stats[key] += 1
        if key not in self._warned:  # once per instance and process (each loader worker has its copy);
            # the per-sample counts travel in sample["view_events"], so nothing is lost across workers
            self._warned.add(key)
            log.warning("%s (counted in view_events/%s; further cases are not logged)", message, key)

    def _boxes_for(self, meta: dict | None, boxes: Tensor | None, wh: tuple[int, int]) -> Tensor:
        if self.k == 0:
            return torch.zeros(0, 4)
        if boxes is None and self.proposals is not None:
            if meta is None or "path" not in meta:
                raise ValueError("BoxAwareViews with proposals needs meta={'path': ...} to look boxes up")
            boxes = self.proposals.boxes_for(meta["path"])
        boxes = torch.zeros(0, 4) if boxes is None else torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if self.box_filter is not None and len(boxes):
            boxes = self.box_filter(boxes, wh)
        return boxes

    def _draw_crop(self, spec: BoxViewSpec, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        if spec.crop == "whole":
            return torch.tensor([0.0, 0.0, float(w), float(h)])
        top, left, ch, cw = RandomResizedCrop.get_params(img, list(spec.scale), list(spec.ratio))
        return torch.tensor([float(left), float(top), float(left + cw), float(top + ch)])

    def _draw_crop_inside(self, spec: BoxViewSpec, region: Tensor) -> Tensor:
        """A random resized crop of the rectangle ``region`` (so it overlaps it fully)."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in region)
        dummy = torch.empty(1, max(1, y2 - y1), max(1, x2 - x1))
        top, left, ch, cw = RandomResizedCrop.get_params(dummy, list(spec.scale), list(spec.ratio))
        return torch.tensor([float(x1 + left), float(y1 + top), float(x1 + left + cw), float(y1 + top + ch)])

    def _draw_crops(self, img: Tensor, first: Tensor | None, *, second_inside_first: bool = False) -> Tensor:
        """``[V, 4]`` crop rectangles: ``same:J`` views copy view J, view 0 is ``first`` when given, view 1
        is drawn inside view 0 with ``second_inside_first``, the rest are drawn afresh."""
        crops = torch.zeros(len(self.views), 4)
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            if j is not None:
                crops[v] = crops[j]
            elif v == 0 and first is not None:
                crops[v] = first
            elif v == 1 and second_inside_first:
                crops[v] = self._draw_crop_inside(spec, crops[0])
            else:
                crops[v] = self._draw_crop(spec, img)
        return crops

    def _overlap_ok(self, crops: Tensor) -> bool:
        if len(crops) < 2 or (self.min_overlap_frac <= 0 and self.min_overlap_side <= 0):
            return True
        inter = _intersect(crops[0], crops[1])
        iw, ih = float(inter[2] - inter[0]), float(inter[3] - inter[1])
        if iw <= 0 or ih <= 0:
            return False
        if iw * ih < self.min_overlap_frac * float(_area(crops[1])):
            return False
        return min(iw, ih) >= self.min_overlap_side

    def _visible(self, boxes: Tensor, crops: Tensor, carriers: list[int]) -> Tensor:
        """``bool [M]``: box visible enough in every box-carrying view."""
        if not len(boxes):
            return torch.zeros(0, dtype=torch.bool)
        area = _area(boxes)
        ok = area > 0  # a degenerate box has no visible fraction; it would pass any ">= frac * 0" test
        for v in carriers:
            inter = _area(_intersect(boxes, crops[v].expand_as(boxes)))
            if self.min_visible <= 0:
                ok &= inter > 0
            else:
                ok &= inter >= self.min_visible * area - 1e-4 * area.clamp_min(1)
        return ok

    # ------------------------------------------------------------------------------ call
    def __call__(self, image: Any, meta: dict | None = None, boxes: Tensor | None = None) -> dict[str, Any]:
        img = TF.pil_to_tensor(image) if isinstance(image, Image.Image) else torch.as_tensor(image)
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"BoxAwareViews: expected an RGB image, got a tensor of shape {tuple(img.shape)}")
        H, W = (int(s) for s in img.shape[-2:])
        events = [0] * len(STAT_KEYS)
        self.stats["samples"] += 1
        props = self._boxes_for(meta, boxes, (W, H))
        if self.k and not len(props):
            self._event(events, "no_proposals", f"image without proposals ({(meta or {}).get('path', 'given boxes')})")
        V = len(self.views)
        carriers = [v for v, s in enumerate(self.views) if s.carries_boxes] if self.k else []

        # 1. crops: bounded retries for the overlap rule and enough visible boxes; keep the best
        best: tuple[int, Tensor, Tensor] | None = None
        first: Tensor | None = None  # view 0's crop, kept across tries with keep_first_crop
        for _ in range(self.max_tries):
            crops = self._draw_crops(img, first)
            if self.keep_first_crop:
                first = crops[0].clone()
            if not self._overlap_ok(crops):
                continue
            visible = self._visible(props, crops, carriers)
            score = int(visible.sum())
            if best is None or score > best[0]:
                best = (score, crops, visible)
            if score >= self.min_boxes:
                break
        else:
            self._event(events, "tries_exhausted", f"no crop set met the rules in {self.max_tries} tries")
        if best is None:  # no overlapping pair at all: re-draw view 1 inside view 0
            self._event(events, "overlap_resampled", "views 0 and 1 did not overlap; view 1 re-drawn inside view 0")
            crops = self._draw_crops(img, first, second_inside_first=True)
            best = (0, crops, self._visible(props, crops, carriers))
        _, crops, visible = best
        flips = torch.zeros(V, dtype=torch.bool)
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            flips[v] = flips[j] if j is not None else bool(torch.rand(()) < spec.hflip_p)

        # 2. boxes: K of the visible ones, a fallback when too few, padding to K
        sel_boxes, sel_ids, mask = self._select(props, visible, crops, carriers, events)

        # 3. views: pixels and boxes through the same v2 calls
        out_views: list[Tensor] = []
        out_boxes: list[Tensor] = []
        geometric: list[Tensor] = []  # uint8 pixels after crop/resize/flip, before colour
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            if j is not None:  # "view J resized": J's pixels before colour, at this size (SoCo*)
                raw = TF.resize(geometric[j], list(spec.hw), interpolation=InterpolationMode(spec.interpolation),
                                antialias=True)
                vb = self._resize_boxes(out_boxes[j], self.views[j].hw, spec.hw)
            else:
                vb_img = self._jitter(sel_boxes, spec, W, H) if self.k else sel_boxes
                raw, vb = self._geometry(img, vb_img, crops[v], bool(flips[v]), spec, (H, W))
            geometric.append(raw)
            # uint8 throughout, so bicubic overshoot is already clamped before the colour ops
            pix = self._colour[v](tv_tensors.Image(raw)).as_subclass(Tensor)
            out_views.append(self._norm(pix) if self.normalize else pix)
            if not spec.carries_boxes or not self.k:
                vb = torch.zeros(self.k, 4)
            out_boxes.append(vb * mask[:, None])

        overlap, overlap_valid = self._overlaps(crops, flips)
        return {
            "views": out_views,
            "boxes": out_boxes,
            "box_mask": mask,
            "box_ids": sel_ids,
            "boxes_image": sel_boxes * mask[:, None],
            "crops": crops,
            "flips": flips,
            "overlap": overlap,
            "overlap_valid": overlap_valid,
            "image_size": torch.tensor([H, W]),
            "view_events": torch.tensor(events),
        }

    def _select(
        self, props: Tensor, visible: Tensor, crops: Tensor, carriers: list[int], events: list[int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        K = self.k
        if K == 0:
            return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
        idx = torch.nonzero(visible).reshape(-1)
        if len(idx) > K:
            idx = idx[torch.randperm(len(idx))[:K]]
        boxes, ids = props[idx], idx.clone()
        region = crops[carriers[0]] if carriers else crops[0]
        for v in carriers[1:]:
            region = _intersect(region, crops[v])
        if len(boxes) < self.min_boxes:
            region_ok = float(region[2] - region[0]) > 0 and float(region[3] - region[1]) > 0
            if not region_ok:  # carriers share nothing: use the first carrier's crop
                region = crops[carriers[0]] if carriers else crops[0]
            if self.fallback == "random":
                self._event(events, "fallback_random", "too few proposals in the shared region; random boxes added")
                extra = random_boxes_in_region(region, K - len(boxes), boxes, min_size=self.fallback_min_size)
                ids = torch.cat([ids, -2 - torch.arange(len(extra))])
                boxes = torch.cat([boxes, extra])
            elif not len(boxes):
                self._event(events, "fallback_whole",
                            "no proposal is visible in every view; the shared region is the box")
                boxes, ids = region[None].clone(), torch.tensor([-100])
        n = len(boxes)
        mask = torch.zeros(K, dtype=torch.bool)
        mask[:n] = True
        if n < K:
            if self.pad == "duplicate" and n:
                dup = torch.randint(n, (K - n,))
                boxes, ids = torch.cat([boxes, boxes[dup]]), torch.cat([ids, ids[dup]])
                mask[:] = True
            else:
                boxes = torch.cat([boxes, torch.zeros(K - n, 4)])
                ids = torch.cat([ids, torch.full((K - n,), -1, dtype=torch.long)])
        return boxes.float(), ids.long(), mask

    @staticmethod
    def _jitter(boxes: Tensor, spec: BoxViewSpec, W: int, H: int) -> Tensor:
        if spec.box_jitter <= 0 or not len(boxes):
            return boxes
        r = spec.box_jitter
        wh = boxes[:, 2:] - boxes[:, :2]
        apply = (torch.rand(len(boxes)) < spec.box_jitter_p)[:, None]
        xy = boxes[:, :2] + (torch.rand(len(boxes), 2) * 2 - 1) * r * wh
        new_wh = wh * (1 + (torch.rand(len(boxes), 2) * 2 - 1) * r)
        jittered = torch.cat([xy, xy + new_wh], dim=1)
        jittered[:, 0::2] = jittered[:, 0::2].clamp(0, W)
        jittered[:, 1::2] = jittered[:, 1::2].clamp(0, H)
        return torch.where(apply, jittered, boxes)

    @staticmethod
    def _geometry(
        img: Tensor, boxes: Tensor, crop: Tensor, flip: bool, spec: BoxViewSpec, hw: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Crop + resize + flip of the pixels and of ``boxes`` (image pixels) by the same calls."""
        x1, y1, x2, y2 = (int(round(float(c))) for c in crop)
        bb = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=hw)
        interp = InterpolationMode(spec.interpolation)
        pix = TF.resized_crop(img, y1, x1, y2 - y1, x2 - x1, list(spec.hw), interpolation=interp, antialias=True)
        bb = TF.resized_crop(bb, y1, x1, y2 - y1, x2 - x1, list(spec.hw))
        if flip:
            pix, bb = TF.horizontal_flip(pix), TF.horizontal_flip(bb)
        bb = TF.clamp_bounding_boxes(bb)
        return pix, bb.as_subclass(Tensor).float()

    @staticmethod
    def _resize_boxes(boxes: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Tensor:
        bb = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=src_hw)
        return TF.resize(bb, list(dst_hw)).as_subclass(Tensor).float()

    def _overlaps(self, crops: Tensor, flips: Tensor) -> tuple[Tensor, Tensor]:
        overlap = torch.stack([
            overlap_in_view(crops[i], crops, bool(flips[i]), spec.hw) for i, spec in enumerate(self.views)
        ])
        valid = (overlap[..., 2] > overlap[..., 0]) & (overlap[..., 3] > overlap[..., 1])
        return overlap, valid

    def __repr__(self) -> str:
        return (f"BoxAwareViews(views={len(self.views)}, k={self.k}, min_visible={self.min_visible}, "
                f"max_tries={self.max_tries}, pad={self.pad!r}, fallback={self.fallback!r})")
