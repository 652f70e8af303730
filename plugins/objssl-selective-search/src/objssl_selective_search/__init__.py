"""Selective-search proposals on OpenCV's ``cv2.ximgproc.segmentation`` (contrib build)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Any

import numpy as np
import torch

from objssl.proposals import Proposals, ProposalSource, image_seed

log = logging.getLogger(__name__)

__all__ = ["SelectiveSearch", "ximgproc_segmentation"]
__version__ = "0.1.0"

MODES = ("fast", "quality", "single")
#: mode="single" defaults: SoCo's selective search (``SoCo:selective_search/generate_imagenet_ss_proposals.py``)
SINGLE_DEFAULTS = {"sigma": 0.9, "k": 300, "min_size": 100}


def ximgproc_segmentation() -> Any:
    """``cv2.ximgproc.segmentation``, or an ImportError that says how to repair the install."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "selective_search needs OpenCV's contrib build: pip install opencv-contrib-python-headless"
        ) from exc
    seg = getattr(getattr(cv2, "ximgproc", None), "segmentation", None)
    # test the factory itself: an overwritten install can leave cv2/ximgproc/ typing stubs behind,
    # which import as an empty namespace package
    if not callable(getattr(seg, "createSelectiveSearchSegmentation", None)):
        raise ImportError(
            f"cv2 {getattr(cv2, '__version__', '?')} has no cv2.ximgproc.segmentation."
            "createSelectiveSearchSegmentation: a plain opencv-python(-headless) package "
            "was installed over opencv-contrib-python-headless (mmcv, albumentations and others pull "
            "it in). Repair: pip install --force-reinstall --no-deps opencv-contrib-python-headless"
        )
    return seg


# Fail at import: the registry then reports the plugin as unavailable with this message
# (`objssl list proposals`, one-line CLI error) instead of a traceback on the first image.
ximgproc_segmentation()


@functools.lru_cache(maxsize=1)
def _c_srand() -> Any:
    """The C library's ``srand``, or None where it cannot be found."""
    name = ctypes.util.find_library("c") or ctypes.util.find_library("msvcrt")
    for candidate in (name, "libc.so.6"):
        if candidate:
            try:
                return ctypes.CDLL(candidate).srand
            except (OSError, AttributeError):
                continue
    log.warning("C srand not found: selective-search box order will differ from run to run")
    return None


class SelectiveSearch(ProposalSource):
    """Selective search boxes, in its own ranking order.

    Args:
        mode: ``"fast"`` (OpenCV's switchToSelectiveSearchFast, the setting ORL's and UniVIP's
            proposals used), ``"quality"`` (more strategies, more boxes, ~3.5x slower) or
            ``"single"`` (SoCo's: one graph segmentation with ``sigma``, ``k``, ``min_size`` on the
            RGB image and one grouping by colour + texture + size + fill; see the README).
        max_side: the longer image side is reduced to at most this before the search (INTER_AREA);
            boxes are scaled back to the original pixels. None: full resolution (SoCo's setting).
        max_boxes: keep only the first ``max_boxes`` boxes.
        threads: OpenCV threads for this process (1 when several worker processes run).
        seed: seed of the ranking. OpenCV ranks regions by hierarchy level times a draw from the C
            library's ``rand()``, so unseeded the box *order* (and so any top-N) changes from run
            to run; we seed ``srand`` before each image, with ``seed`` or (None) a hash of the
            image's pixels, which makes a cache reproducible.
        sigma, k, min_size: the graph segmentation of ``mode="single"`` (Felzenszwalb-Huttenlocher:
            Gaussian smoothing, the threshold scale, the smallest segment in pixels); defaults 0.9,
            300, 100 (SoCo's). Other modes use OpenCV's own segmentations and reject them.
    """

    name = "selective_search"
    version = "1"

    def __init__(
        self,
        mode: str = "fast",
        max_side: int | None = 500,
        max_boxes: int | None = None,
        threads: int = 1,
        seed: int | None = None,
        sigma: float | None = None,
        k: float | None = None,
        min_size: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"selective_search: mode must be one of {MODES}, got {mode!r}")
        given = {"sigma": sigma, "k": k, "min_size": min_size}
        if mode != "single":
            extra = [name for name, value in given.items() if value is not None]
            if extra:
                verb = "applies" if len(extra) == 1 else "apply"
                raise ValueError(f"selective_search: {', '.join(extra)} {verb} to mode=single only (mode={mode!r})")
            self.segmentation: dict[str, Any] | None = None
        else:
            seg = {name: SINGLE_DEFAULTS[name] if value is None else value for name, value in given.items()}
            if not float(seg["sigma"]) > 0:
                raise ValueError(f"selective_search: sigma must be > 0, got {seg['sigma']}")
            if not float(seg["k"]) > 0:
                raise ValueError(f"selective_search: k must be > 0, got {seg['k']}")
            if int(seg["min_size"]) < 1:
                raise ValueError(f"selective_search: min_size must be >= 1 pixel, got {seg['min_size']}")
            self.segmentation = {"sigma": float(seg["sigma"]), "k": float(seg["k"]), "min_size": int(seg["min_size"])}
        if max_side is not None and int(max_side) < 16:
            raise ValueError(f"selective_search: max_side must be >= 16 or None, got {max_side}")
        if max_boxes is not None and int(max_boxes) < 1:
            raise ValueError(f"selective_search: max_boxes must be >= 1 or None, got {max_boxes}")
        if int(threads) < 1:
            raise ValueError(f"selective_search: threads must be >= 1, got {threads}")
        self.mode = mode
        self.max_side = None if max_side is None else int(max_side)
        self.max_boxes = None if max_boxes is None else int(max_boxes)
        self.threads = int(threads)
        self.seed = None if seed is None else int(seed)
        self._seg = ximgproc_segmentation()  # fail at construction, not on the first image

    def params(self) -> dict[str, Any]:
        # threads does not change the boxes, so it is not part of the cache key; the segmentation
        # parameters exist in mode=single only (the keys of fast/quality caches stay as they were)
        return {"mode": self.mode, "max_side": self.max_side, "max_boxes": self.max_boxes, "seed": self.seed,
                **(self.segmentation or {})}

    def propose(self, image: np.ndarray) -> Proposals:
        import cv2

        cv2.setNumThreads(self.threads)
        h, w = image.shape[:2]
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        sx = sy = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            size = (max(1, round(w * f)), max(1, round(h * f)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            sx, sy = w / size[0], h / size[1]
        ss = self._seg.createSelectiveSearchSegmentation()
        ss.setBaseImage(bgr)
        if self.mode == "fast":
            ss.switchToSelectiveSearchFast()
        elif self.mode == "quality":
            ss.switchToSelectiveSearchQuality()
        else:
            self._single(ss, bgr)
        srand = _c_srand()
        if srand is not None:
            srand(ctypes.c_uint(image_seed(bgr, self.seed) & 0x7FFFFFFF))
        rects = ss.process()  # int32 [K, 4] x, y, w, h
        if rects is None or len(rects) == 0:
            return Proposals(torch.zeros(0, 4))
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        if self.max_boxes is not None:
            rects = rects[: self.max_boxes]
        xyxy = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        xyxy *= np.array([sx, sy, sx, sy], dtype=np.float32)
        return Proposals(torch.from_numpy(xyxy))

    def _single(self, ss: Any, bgr: np.ndarray) -> None:
        """SoCo's setting: one image (RGB colour space; SoCo's HSV colour histograms fall into one bin,
        see the README), one graph segmentation, one strategy summing the four similarities."""
        seg = self.segmentation
        ss.clearImages()
        ss.addImage(bgr)
        ss.clearGraphSegmentations()
        ss.addGraphSegmentation(self._seg.createGraphSegmentation(seg["sigma"], seg["k"], seg["min_size"]))
        ss.clearStrategies()
        ss.addStrategy(self._seg.createSelectiveSearchSegmentationStrategyMultiple(
            self._seg.createSelectiveSearchSegmentationStrategyColor(),
            self._seg.createSelectiveSearchSegmentationStrategyTexture(),
            self._seg.createSelectiveSearchSegmentationStrategySize(),
            self._seg.createSelectiveSearchSegmentationStrategyFill(),
        ))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_seg", None)  # a module: re-imported after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._seg = ximgproc_segmentation()
