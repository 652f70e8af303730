"""The box-aware multi-view transform, :class:`BoxAwareViews` (rules and deviations: see the
:mod:`objssl.data.views` package docstring)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.augment import AUGMENT_ON, DeviceAugment
from objssl.data.device.pipeline import DeviceView
from objssl.data.transforms import ViewAugmentation
from objssl.data.views.box_geometry import jitter_boxes, overlap_in_view, visible_in_crops
from objssl.data.views.box_selection import select_boxes
from objssl.data.views.crops import draw_crops, overlap_ok
from objssl.data.views.events import STAT_KEYS
from objssl.data.views.instances import InstanceCanvas
from objssl.data.views.pair_selection import pair_views, pairs_visible, select_pair_sets
from objssl.data.views.presets import preset_kwargs, provided_fields
from objssl.data.views.view_maker import MadeViews, ViewMaker
from objssl.data.views.view_spec import BoxViewSpec

log = logging.getLogger(__name__)

__all__ = ["BoxAwareViews", "BOX_SETS", "AUGMENT_ON"]

#: ``box_sets`` choices: one set visible in every view, or one set per pair of view 0 with another view
BOX_SETS = ("shared", "per_pair")


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
        instance_canvas: side of the canvas the K boxes' instance crops are cut from on the device
            (UniVIP; :class:`objssl.data.views.instances.InstanceCanvas`); 0: no instances.
        instance_color: the canvas's colour operations (default: view 0's).
        box_sets: ``"shared"`` (one set of ``K`` boxes visible in every box-carrying view) or
            ``"per_pair"`` (SoCo's rule, :mod:`objssl.data.views.pair_selection`: each pair of view 0
            with view ``b`` draws its own ``K`` boxes among those visible in its two crops, with its
            own view-0 jitter and padding; tries lower the minimum as SoCo's do).
        augment_on: ``"loader"`` (the views' pixels are made here) or ``"device"`` (only their
            parameters: see below and docs/device_views.md).

    Output of ``views(image, meta=None, boxes=None)``:
        ``views``: list of ``float [3, h_v, w_v]``; ``boxes``: list of ``float [K, 4]`` (xyxy in each
        view's pixels, clipped, flipped with the view; ``[K, 4]`` zeros for views without boxes);
        ``box_mask``: ``bool [K]``; ``box_ids``: ``long [K]`` (proposal index; -1 padding, -2-j random
        fallback box j, -100 the whole-region fallback); ``boxes_image``: ``float [K, 4]`` in image
        pixels; ``crops``: ``float [V, 4]`` (each view's crop in image pixels); ``flips``: ``bool [V]``;
        ``overlap``: ``float [V, V, 4]`` (crop i ∩ crop j in view i's pixels); ``overlap_valid``:
        ``bool [V, V]``; ``image_size``: ``long [2]`` (H, W); ``view_events``: ``long [5]``
        (:data:`objssl.data.views.STAT_KEYS`). With ``instance_canvas``: ``instances``, a dict of
        ``canvas`` ``uint8 [3, S, S]`` (the image resized, colour drawn for this image), ``boxes``
        ``float [K, 4]`` (the boxes on it) and ``flips`` ``bool [K]``.

        With ``box_sets="per_pair"``, pair ``p`` is view 0 with view ``p + 1`` (``P = V - 1``):
        ``box_mask``, ``box_ids`` are ``[P, K]``, ``boxes_image`` ``[P, K, 4]``, ``boxes[0]`` is
        ``[P, K, 4]`` (view 0's boxes of each pair) and ``boxes[b]`` (``b >= 1``) ``[K, 4]`` is pair
        ``b - 1``'s set in view ``b``. A ``box_mask`` with one more dimension is how consumers tell.

        With ``augment_on="device"`` no pixel is made here: ``image`` may be just its ``(H, W)``, the
        same random draws are made in the same order (so every other field is identical for the same
        seed), and ``views`` is replaced by ``view_params`` (per view,
        :meth:`~objssl.data.device.params.ViewParams.as_tensors`) and ``cutout`` (per view, ``long
        [K', 4]`` box-cutout squares); ``source`` is the ``uint8 [3, H, W]`` image when one was given,
        and the instance ``canvas`` becomes ``canvas_params``. :attr:`device_views` makes the views of
        a collated batch on the training device (:class:`objssl.data.device.augment.DeviceAugment`).
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
        instance_canvas: int = 0,
        instance_color: ViewAugmentation | None = None,
        box_sets: str = "shared",
        augment_on: str = "loader",
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
        if box_sets not in BOX_SETS:
            raise ValueError(f"BoxAwareViews: box_sets must be one of {BOX_SETS}, got {box_sets!r}")
        if box_sets == "per_pair" and instance_canvas:
            raise ValueError("BoxAwareViews: box_sets='per_pair' has no single box set for instance_canvas")
        for v, spec in enumerate(self.views):
            if not 0 <= spec.cutout_p <= 1:
                raise ValueError(f"BoxAwareViews: views[{v}].cutout_p must be in [0, 1], got {spec.cutout_p}")
            lo, hi = spec.cutout_area
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"BoxAwareViews: views[{v}].cutout_area must be 0 <= low <= high <= 1, "
                                 f"got {spec.cutout_area}")
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"BoxAwareViews: augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.box_sets = box_sets
        self.augment_on, self.device = augment_on, augment_on == "device"
        self.k, self.min_visible = int(k), float(min_visible)
        self.min_boxes = self.k if min_boxes is None else min(int(min_boxes), self.k)
        self.min_overlap_frac, self.min_overlap_side = float(min_overlap_frac), float(min_overlap_side)
        self.max_tries, self.pad, self.fallback = int(max_tries), pad, fallback
        self.keep_first_crop = bool(keep_first_crop)
        self.fallback_min_size = float(fallback_min_size)
        self.proposals, self.box_filter, self.normalize = proposals, box_filter, normalize
        # blur kernels follow each view's own size (~10 % of its side)
        self._maker = ViewMaker(self.views, k=self.k, normalize=normalize, device=self.device)
        self.stats = {key: 0 for key in ("samples", *STAT_KEYS)}
        if instance_canvas and not self.k:
            raise ValueError("BoxAwareViews: instance_canvas needs boxes (k > 0)")
        self.instances = (InstanceCanvas(instance_canvas, instance_color or self.views[0].color,
                                         hflip_p=self.views[0].hflip_p) if instance_canvas else None)
        self._warned: set[str] = set()
        #: what the training device makes of a batch of these samples with ``augment_on="device"``
        self.device_views = DeviceAugment(
            tuple(DeviceView.from_view_spec(spec, normalize=normalize) for spec in self.views),
            canvas=self.instances.device_view() if self.instances is not None else None,
        )

    @classmethod
    def from_preset(cls, name: str, *, proposals: Any = None, **overrides: Any) -> BoxAwareViews:
        """The views of a method (:data:`objssl.data.views.VIEW_PRESETS`), with any argument overridden.

        ``size=S`` scales every view's size by ``S / 224`` (handy for small tests and demos);
        ``cutout_p=P`` / ``cutout_area=(a, b)`` set the box cutout of every box-carrying view but view 0
        (SoCo cuts views 2 and 3, not the whole-image view); ``view_overrides={v: {field: value}}``
        replaces fields of view ``v``'s :class:`BoxViewSpec` (after the size scaling).
        """
        kwargs = preset_kwargs(name)
        size = overrides.pop("size", None)
        cutout = {key: overrides.pop(key) for key in ("cutout_p", "cutout_area") if key in overrides}
        per_view = overrides.pop("view_overrides", None) or {}
        if size is not None:
            kwargs["views"] = tuple(
                replace(s, size=max(8, round(s.hw[0] * size / 224))) for s in kwargs["views"]
            )
            if kwargs.get("instance_canvas"):
                kwargs["instance_canvas"] = max(8, round(kwargs["instance_canvas"] * size / 224))
        kwargs.update(overrides)
        if cutout:
            if "cutout_area" in cutout:
                cutout["cutout_area"] = tuple(float(a) for a in cutout["cutout_area"])
            kwargs["views"] = tuple(replace(s, **cutout) if v and s.carries_boxes else s
                                    for v, s in enumerate(kwargs["views"]))
        if per_view:
            kwargs["views"] = tuple(replace(s, **per_view.get(v, {})) for v, s in enumerate(kwargs["views"]))
        return cls(proposals=proposals, **kwargs)

    @property
    def provides(self) -> frozenset[str]:
        """The batch fields these views provide (:func:`objssl.data.views.preset_provides`)."""
        return provided_fields(self.k, instances=self.instances is not None)

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

    # ------------------------------------------------------------------------------ call
    def __call__(self, image: Any, meta: dict | None = None, boxes: Tensor | None = None) -> dict[str, Any]:
        if self.device and isinstance(image, tuple):  # only the size: the caller sends the pixels
            H, W = (int(s) for s in image)
            img = torch.empty(0, H, W, dtype=torch.uint8)
        else:
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

        if self.box_sets == "per_pair" and carriers:
            return self._per_pair(img, props, events, (H, W))

        # 1. crops: bounded retries for the overlap rule and enough visible boxes; keep the best
        best: tuple[int, Tensor, Tensor] | None = None
        first: Tensor | None = None  # view 0's crop, kept across tries with keep_first_crop
        for _ in range(self.max_tries):
            crops = draw_crops(self.views, img, first)
            if self.keep_first_crop:
                first = crops[0].clone()
            if not overlap_ok(crops, self.min_overlap_frac, self.min_overlap_side):
                continue
            visible = visible_in_crops(props, crops, carriers, self.min_visible)
            score = int(visible.sum())
            if best is None or score > best[0]:
                best = (score, crops, visible)
            if score >= self.min_boxes:
                break
        else:
            self._event(events, "tries_exhausted", f"no crop set met the rules in {self.max_tries} tries")
        if best is None:  # no overlapping pair at all: re-draw view 1 inside view 0
            self._event(events, "overlap_resampled", "views 0 and 1 did not overlap; view 1 re-drawn inside view 0")
            crops = draw_crops(self.views, img, first, second_inside_first=True)
            best = (0, crops, visible_in_crops(props, crops, carriers, self.min_visible))
        _, crops, visible = best
        flips = torch.zeros(V, dtype=torch.bool)
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            flips[v] = flips[j] if j is not None else bool(torch.rand(()) < spec.hflip_p)

        # 2. boxes: K of the visible ones, a fallback when too few, padding to K
        sel_boxes, sel_ids, mask = select_boxes(
            props, visible, crops, carriers, k=self.k, min_boxes=self.min_boxes, pad=self.pad,
            fallback=self.fallback, fallback_min_size=self.fallback_min_size,
            on_event=lambda key, message: self._event(events, key, message),
        )

        # 3. views: boxes through the same v2 calls as the pixels (made here, or on the device)
        made = MadeViews()
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            vb_img = None
            if j is None:
                vb_img = jitter_boxes(sel_boxes, spec.box_jitter, spec.box_jitter_p, (H, W)) if self.k else sel_boxes
            self._maker.make(made, v, img, (H, W), crops, flips, vb_img, mask, made.boxes[j] if j is not None else None)

        overlap, overlap_valid = self._overlaps(crops, flips)
        extra = {}
        if self.instances is not None:
            extra = self.instances.draw((H, W), sel_boxes, mask) if self.device else self.instances(img, sel_boxes, mask)
        return {
            **made.fields(img if self.device and img.numel() else None),
            "box_mask": mask,
            "box_ids": sel_ids,
            "boxes_image": sel_boxes * mask[:, None],
            "crops": crops,
            "flips": flips,
            "overlap": overlap,
            "overlap_valid": overlap_valid,
            "image_size": torch.tensor([H, W]),
            "view_events": torch.tensor(events),
            **extra,
        }

    def _per_pair(self, img: Tensor, props: Tensor, events: list[int], hw: tuple[int, int]) -> dict[str, Any]:
        """``box_sets="per_pair"`` (:mod:`objssl.data.views.pair_selection`; layout: the class docstring)."""
        H, W = hw
        V = len(self.views)
        on_event = lambda key, message: self._event(events, key, message)  # noqa: E731
        roots = pair_views(self.views)
        # 1. crops: every pair needs `least` visible proposals; `least` halves after each failed try
        least = max(1, self.min_boxes)
        for _ in range(self.max_tries):
            crops = draw_crops(self.views, img, None)
            if not overlap_ok(crops, self.min_overlap_frac, self.min_overlap_side):
                continue
            visible = pairs_visible(props, crops, roots, self.min_visible)
            if all(int(vis.sum()) >= least for vis in visible.values()):
                break
            least = max(least // 2, 1)
        else:
            self._event(events, "tries_exhausted", f"no crop set met the rules in {self.max_tries} tries")
            if not overlap_ok(crops, self.min_overlap_frac, self.min_overlap_side):
                self._event(events, "overlap_resampled", "views 0 and 1 did not overlap; view 1 re-drawn inside view 0")
                crops = draw_crops(self.views, img, None, second_inside_first=True)
            visible = pairs_visible(props, crops, roots, self.min_visible)
        flips = torch.zeros(V, dtype=torch.bool)
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            flips[v] = flips[j] if j is not None else bool(torch.rand(()) < spec.hflip_p)

        # 2. boxes: each pair's own K, fallback and padding
        sel_boxes, sel_ids, mask = select_pair_sets(
            props, visible, crops, roots, k=self.k, min_boxes=self.min_boxes, pad=self.pad, fallback=self.fallback,
            fallback_min_size=self.fallback_min_size, on_event=on_event,
        )
        P, K = mask.shape

        # 3. views; view 0 carries every pair's set, jittered per pair (a same:J pair shares J's draw)
        made = MadeViews()
        for v, spec in enumerate(self.views):
            j = spec.source_view()
            if v == 0:
                jittered: dict[int | None, Tensor] = {}
                for p, root in enumerate(roots):
                    if root not in jittered:
                        jittered[root] = jitter_boxes(sel_boxes[p], spec.box_jitter, spec.box_jitter_p, (H, W))
                vb_img = torch.stack([jittered[root] for root in roots]).reshape(P * K, 4)
                vmask = mask
            else:
                vb_img = jitter_boxes(sel_boxes[v - 1], spec.box_jitter, spec.box_jitter_p, (H, W))
                vmask = mask[v - 1]
            source = None
            if j is not None:
                source = made.boxes[j] if j > 0 else made.boxes[0][v - 1]  # a same:0 view: its own pair's set
            self._maker.make(made, v, img, (H, W), crops, flips, vb_img, vmask, source)

        overlap, overlap_valid = self._overlaps(crops, flips)
        return {
            **made.fields(img if self.device and img.numel() else None),
            "box_mask": mask,
            "box_ids": sel_ids,
            "boxes_image": sel_boxes * mask[..., None],
            "crops": crops,
            "flips": flips,
            "overlap": overlap,
            "overlap_valid": overlap_valid,
            "image_size": torch.tensor([H, W]),
            "view_events": torch.tensor(events),
        }

    def _overlaps(self, crops: Tensor, flips: Tensor) -> tuple[Tensor, Tensor]:
        overlap = torch.stack([
            overlap_in_view(crops[i], crops, bool(flips[i]), spec.hw) for i, spec in enumerate(self.views)
        ])
        valid = (overlap[..., 2] > overlap[..., 0]) & (overlap[..., 3] > overlap[..., 1])
        return overlap, valid

    def __repr__(self) -> str:
        return (f"BoxAwareViews(views={len(self.views)}, k={self.k}, min_visible={self.min_visible}, "
                f"max_tries={self.max_tries}, pad={self.pad!r}, fallback={self.fallback!r}, "
                f"box_sets={self.box_sets!r})")
