"""Edge-density boxes: an example objssl proposal source in a few lines of numpy.

Windows of a few sizes and aspect ratios slide over the image; each is scored by the mean
gradient magnitude inside it (objects have more edges than sky, walls and road), and the best
windows are kept after non-maximum suppression. A baseline, not a detector: it shows the parts a
proposal source needs (``name``, ``version``, ``propose``), and that the cache key comes from the
constructor's arguments without any code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import nms

from objssl.proposals import Proposals, ProposalSource

__all__ = ["EdgeDensity"]
__version__ = "0.1.0"


class EdgeDensity(ProposalSource):
    """Windows with the most edges per pixel.

    Args:
        scales: window side as a fraction of ``sqrt(H * W)``.
        aspects: window width / height ratios.
        stride: step between windows, as a fraction of the window's side.
        max_boxes: boxes kept, best first.
        iou: windows overlapping a better one by more than this are dropped.
    """

    name = "edge_density"
    version = "1"  # bump when the boxes for the same parameters change

    def __init__(
        self,
        scales: Sequence[float] = (0.2, 0.35, 0.5),
        aspects: Sequence[float] = (0.5, 1.0, 2.0),
        stride: float = 0.25,
        max_boxes: int = 50,
        iou: float = 0.5,
    ) -> None:
        if not scales or min(scales) <= 0 or max(scales) > 1:
            raise ValueError(f"edge_density: scales must be in (0, 1], got {scales}")
        if not aspects or min(aspects) <= 0:
            raise ValueError(f"edge_density: aspects must be positive, got {aspects}")
        if not 0 < stride <= 1:
            raise ValueError(f"edge_density: stride must be in (0, 1], got {stride}")
        if int(max_boxes) < 1:
            raise ValueError(f"edge_density: max_boxes must be >= 1, got {max_boxes}")
        self.scales = tuple(float(s) for s in scales)
        self.aspects = tuple(float(a) for a in aspects)
        self.stride, self.max_boxes, self.iou = float(stride), int(max_boxes), float(iou)
        # no params(): the cache key is made of these constructor arguments

    def propose(self, image: np.ndarray) -> Proposals:
        h, w = image.shape[:2]
        grey = image.astype(np.float32).mean(axis=2)
        edges = np.zeros_like(grey)
        edges[:, 1:] += np.abs(np.diff(grey, axis=1))
        edges[1:, :] += np.abs(np.diff(grey, axis=0))
        integral = np.pad(edges.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # sum of any window in O(1)
        windows = []
        for scale in self.scales:
            for aspect in self.aspects:
                side = scale * np.sqrt(h * w)
                bw = int(min(w, max(2, round(side * np.sqrt(aspect)))))
                bh = int(min(h, max(2, round(side / np.sqrt(aspect)))))
                xs = np.arange(0, w - bw + 1, max(1, int(bw * self.stride)))
                ys = np.arange(0, h - bh + 1, max(1, int(bh * self.stride)))
                x1, y1 = np.meshgrid(xs, ys)
                x1, y1 = x1.ravel(), y1.ravel()
                x2, y2 = x1 + bw, y1 + bh
                total = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
                windows.append(np.stack([x1, y1, x2, y2, total / (bw * bh)], axis=1))
        rows = torch.from_numpy(np.concatenate(windows).astype(np.float32))
        boxes, scores = rows[:, :4], rows[:, 4]
        keep = nms(boxes, scores, self.iou)[: self.max_boxes]  # sorted by score, best first
        return Proposals(boxes[keep], scores[keep])
