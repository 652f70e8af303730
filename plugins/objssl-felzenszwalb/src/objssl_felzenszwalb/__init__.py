"""Felzenszwalb segment boxes on ``skimage.segmentation.felzenszwalb``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from objssl.proposals import Proposals, ProposalSource

__all__ = ["Felzenszwalb", "segment_boxes"]
__version__ = "0.1.0"


def segment_boxes(labels: np.ndarray) -> np.ndarray:
    """``xyxy`` bounding boxes (exclusive right/bottom edge) of each label of an ``H×W`` integer map.

    Returns ``float32 [L, 4]`` for labels ``0..L-1`` (labels with no pixel are left out).
    """
    from scipy import ndimage

    slices = ndimage.find_objects(labels + 1)  # find_objects ignores label 0
    rows = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in slices if s is not None]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


class Felzenszwalb(ProposalSource):
    """Boxes of graph-based segments at several scales.

    Args:
        scales: Felzenszwalb ``scale`` values (higher: larger segments); boxes of larger scales
            come first.
        sigma: Gaussian pre-smoothing.
        min_size: minimum segment size in pixels (at the working resolution).
        max_side: the longer side is reduced to at most this (area averaging) before segmenting;
            boxes are scaled back to the original pixels. None: full size.
        max_boxes: keep the first ``max_boxes`` boxes.
    """

    name = "felzenszwalb"
    version = "2"  # 2: area-averaged (PIL BOX) downscaling instead of skimage's Gaussian + bilinear

    def __init__(
        self,
        scales: Sequence[float] = (100, 300, 1000),
        sigma: float = 0.8,
        min_size: int = 50,
        max_side: int | None = 500,
        max_boxes: int | None = None,
    ) -> None:
        scales = tuple(float(s) for s in scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"felzenszwalb: scales must be positive numbers, got {scales}")
        if sigma < 0:
            raise ValueError(f"felzenszwalb: sigma must be >= 0, got {sigma}")
        if int(min_size) < 1:
            raise ValueError(f"felzenszwalb: min_size must be >= 1, got {min_size}")
        if max_side is not None and int(max_side) < 16:
            raise ValueError(f"felzenszwalb: max_side must be >= 16 or None, got {max_side}")
        if max_boxes is not None and int(max_boxes) < 1:
            raise ValueError(f"felzenszwalb: max_boxes must be >= 1 or None, got {max_boxes}")
        self.scales = tuple(sorted(scales, reverse=True))
        self.sigma, self.min_size = float(sigma), int(min_size)
        self.max_side = None if max_side is None else int(max_side)
        self.max_boxes = None if max_boxes is None else int(max_boxes)

    def params(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "sigma": self.sigma, "min_size": self.min_size,
                "max_side": self.max_side, "max_boxes": self.max_boxes}

    def propose(self, image: np.ndarray) -> Proposals:
        from PIL import Image
        from skimage.segmentation import felzenszwalb

        h, w = image.shape[:2]
        work = image
        if self.max_side is not None and max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            size = (max(1, round(w * f)), max(1, round(h * f)))
            # area averaging (as OpenCV's INTER_AREA in selective_search): no aliasing, and an
            # image upscaled by an integer factor shrinks back to exactly the original pixels
            work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        sy, sx = h / work.shape[0], w / work.shape[1]
        per_scale = []
        for scale in self.scales:
            labels = felzenszwalb(work, scale=scale, sigma=self.sigma, min_size=self.min_size)
            boxes = segment_boxes(labels)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            per_scale.append(boxes[np.argsort(-area, kind="stable")])
        boxes = np.concatenate(per_scale)
        # exact duplicates (the same segment found at two scales): keep the first occurrence
        _, first = np.unique(boxes, axis=0, return_index=True)
        boxes = boxes[np.sort(first)]
        if self.max_boxes is not None:
            boxes = boxes[: self.max_boxes]
        boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
        return Proposals(torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)))
