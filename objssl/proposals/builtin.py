"""Built-in proposal sources: ``random``, ``grid`` and ``precomputed``.

``random`` and ``grid`` need no extra package and serve as baselines (SoCo's paper compares random
boxes with selective search) and as the fallback for images without proposals. ``precomputed``
reads boxes made elsewhere: an objssl proposal cache (``objssl proposals``) or a JSON file of boxes.
Selective search and Felzenszwalb regions are plugins (``plugins/``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch

from objssl.errors import DataError
from objssl.proposals.base import MissingProposalsError, Proposals, ProposalSource, image_seed
from objssl.proposals.cache_reader import ProposalCache
from objssl.registry import PROPOSALS

__all__ = ["random_boxes", "RandomSource", "GridSource", "PrecomputedSource", "load_box_json"]


def random_boxes(
    width: float,
    height: float,
    n: int,
    *,
    min_size: float = 1.0,
    max_aspect: float = 3.0,
    scale: tuple[float, float] = (0.1, 0.8),
    generator: torch.Generator | None = None,
    within: tuple[float, float, float, float] | None = None,
) -> torch.Tensor:
    """``n`` random ``xyxy`` boxes inside an image (or inside the rectangle ``within``).

    Box side ``sqrt(w*h)`` is drawn uniformly from ``scale`` times the region's ``sqrt(W*H)``, the
    aspect ratio log-uniformly from ``[1/max_aspect, max_aspect]``; boxes are then shrunk to fit the
    region and kept at least ``min_size`` per side (capped by the region's size, so a small region
    still gets boxes). Vectorised, no retries.

    Args:
        width, height: image size in pixels.
        n: number of boxes.
        within: ``(x1, y1, x2, y2)`` region to sample inside; default the whole image.

    Returns:
        ``float32 [n, 4]``.
    """
    if n < 0:
        raise ValueError(f"random_boxes: n must be >= 0, got {n}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"random_boxes: scale must satisfy 0 < lo <= hi, got {scale}")
    if max_aspect < 1:
        raise ValueError(f"random_boxes: max_aspect must be >= 1, got {max_aspect}")
    x0, y0, x1, y1 = within if within is not None else (0.0, 0.0, float(width), float(height))
    rw, rh = max(float(x1) - float(x0), 0.0), max(float(y1) - float(y0), 0.0)
    if n == 0 or rw <= 0 or rh <= 0:
        if n and (rw <= 0 or rh <= 0):
            raise ValueError(f"random_boxes: empty region {(x0, y0, x1, y1)}")
        return torch.zeros(0, 4)
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    side = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * math.sqrt(rw * rh)
    log_a = math.log(max_aspect)
    aspect = torch.exp((2 * u[:, 1] - 1) * log_a)  # w / h
    w = side * aspect.sqrt()
    h = side / aspect.sqrt()
    w = w.clamp(min(min_size, rw), rw)
    h = h.clamp(min(min_size, rh), rh)
    # shrinking one side may break the aspect bound; restore it by shrinking the other
    h = torch.minimum(h, w * max_aspect).clamp(max=rh)
    w = torch.minimum(w, h * max_aspect).clamp(max=rw)
    bx = x0 + (rw - w) * u[:, 2]
    by = y0 + (rh - h) * u[:, 3]
    return torch.stack([bx, by, bx + w, by + h], dim=1).float()


@PROPOSALS.register("random")
class RandomSource(ProposalSource):
    """Random boxes (``n`` per image) with size and aspect constraints.

    The boxes of an image depend only on its pixels and ``seed`` (the generator is seeded from a
    hash of the image), so a cache built twice is identical.

    Args:
        n: boxes per image.
        scale: range of ``sqrt(box area) / sqrt(image area)``.
        max_aspect: largest ``max(w/h, h/w)``.
        min_size: smallest box side in pixels (capped by the image size).
        seed: fixed seed for every image instead of the image hash.
    """

    name = "random"
    version = "1"

    def __init__(
        self,
        n: int = 100,
        scale: tuple[float, float] = (0.1, 0.8),
        max_aspect: float = 3.0,
        min_size: float = 16.0,
        seed: int | None = None,
    ) -> None:
        if int(n) < 1:
            raise ValueError(f"random proposals: n must be >= 1, got {n}")
        lo, hi = (float(s) for s in scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"random proposals: scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        if max_aspect < 1:
            raise ValueError(f"random proposals: max_aspect must be >= 1, got {max_aspect}")
        self.n, self.scale, self.max_aspect = int(n), (lo, hi), float(max_aspect)
        self.min_size, self.seed = float(min_size), seed

    def params(self) -> dict[str, Any]:
        return {"n": self.n, "scale": list(self.scale), "max_aspect": self.max_aspect,
                "min_size": self.min_size, "seed": self.seed}

    def propose(self, image: np.ndarray) -> Proposals:
        h, w = image.shape[:2]
        gen = torch.Generator().manual_seed(image_seed(image, self.seed))
        boxes = random_boxes(w, h, self.n, min_size=self.min_size, max_aspect=self.max_aspect,
                             scale=self.scale, generator=gen)
        return Proposals(boxes)


@PROPOSALS.register("grid")
class GridSource(ProposalSource):
    """The cells of regular ``g × g`` grids over the image, for each ``g`` in ``grids``.

    A proposal-free baseline: ``grids=(1, 2, 3, 4)`` gives 1 + 4 + 9 + 16 = 30 boxes, the
    whole image first and finer cells after.
    """

    name = "grid"
    version = "1"

    def __init__(self, grids: tuple[int, ...] = (1, 2, 3, 4)) -> None:
        grids = tuple(int(g) for g in grids)
        if not grids or min(grids) < 1:
            raise ValueError(f"grid proposals: grids must be positive integers, got {grids}")
        self.grids = grids

    def params(self) -> dict[str, Any]:
        return {"grids": list(self.grids)}

    def propose(self, image: np.ndarray) -> Proposals:
        h, w = image.shape[:2]
        cells = []
        for g in self.grids:
            xs = torch.linspace(0, w, g + 1)
            ys = torch.linspace(0, h, g + 1)
            gy, gx = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
            gx, gy = gx.reshape(-1), gy.reshape(-1)
            cells.append(torch.stack([xs[gx], ys[gy], xs[gx + 1], ys[gy + 1]], dim=1))
        return Proposals(torch.cat(cells))


def load_box_json(path: str) -> dict[str, torch.Tensor]:
    """Boxes per image from a JSON file, as ``{key: float32 [K, 4] xyxy}``.

    Two layouts are read:

    * COCO style: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "bbox": [x, y, w, h]}]}``
      (read with pycocotools); annotations keep their file order, which is the ranking.
    * A mapping ``{image name: [[x, y, w, h], ...]}``, the format SoCo's and UniVIP's proposal
      scripts write (keys with or without the file extension).

    Keys are the image file names as written in the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"precomputed proposals: {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"precomputed proposals: {path} is not valid JSON ({exc})") from None

    def xywh_to_xyxy(rows: Any, where: str) -> torch.Tensor:
        t = torch.as_tensor(rows, dtype=torch.float32) if len(rows) else torch.zeros(0, 4)
        if t.ndim != 2 or t.shape[1] != 4:
            raise DataError(f"precomputed proposals: {path}: {where} is not a list of [x, y, w, h]")
        return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)

    if isinstance(data, dict) and "images" in data and "annotations" in data:
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = data
        with _quiet():
            coco.createIndex()
        out = {}
        for img_id, info in coco.imgs.items():
            anns = coco.imgToAnns.get(img_id, [])
            out[info["file_name"]] = xywh_to_xyxy([a["bbox"] for a in anns], f"image {img_id}")
        return out
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return {str(k): xywh_to_xyxy(v, f"entry {k!r}") for k, v in data.items()}
    raise DataError(
        f"precomputed proposals: {path} is neither a COCO json (images + annotations) "
        "nor a mapping {image name: [[x, y, w, h], ...]}"
    )


class _quiet:
    """Silence pycocotools' prints (it reports progress on stdout)."""

    def __enter__(self) -> None:
        import contextlib
        import io

        self._ctx = contextlib.redirect_stdout(io.StringIO())
        self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


@PROPOSALS.register("precomputed")
class PrecomputedSource(ProposalSource):
    """Boxes looked up by image path in an objssl proposal cache or a JSON file of boxes.

    Args:
        path: a cache folder written by ``objssl proposals`` or a JSON file (:func:`load_box_json`).
        missing: what to do for an image the file does not list: ``"error"`` or ``"empty"``
            (no boxes; the view sampler's fallback then applies).
    """

    name = "precomputed"
    version = "1"
    needs_path = True

    def __init__(self, path: str, missing: str = "error") -> None:
        if missing not in ("error", "empty"):
            raise ValueError(f"precomputed proposals: missing must be 'error' or 'empty', got {missing!r}")
        self.path, self.missing = str(path), missing
        if os.path.isdir(self.path):
            self._lookup = ProposalCache(self.path)
        else:
            self._lookup = _JsonBoxes(load_box_json(self.path), self.path)

    def params(self) -> dict[str, Any]:
        # missing changes what an unlisted image gets (no boxes instead of an error)
        return {"path": os.path.abspath(self.path), "missing": self.missing}

    def boxes_for(self, path: str) -> torch.Tensor:
        """Boxes of the image at ``path`` (``float32 [K, 4]``)."""
        try:
            return self._lookup.boxes_for(path)
        except MissingProposalsError:
            if self.missing == "empty":
                return torch.zeros(0, 4)
            raise

    def propose(self, image: np.ndarray, *, path: str | None = None) -> Proposals:
        if path is None:
            raise ValueError("precomputed proposals look boxes up by file: pass path=")
        return Proposals(self.boxes_for(path))


class _JsonBoxes:
    """Path → boxes for :func:`load_box_json` output, matching by relative path, name or stem."""

    def __init__(self, table: dict[str, torch.Tensor], source: str) -> None:
        self.table, self.source = table, source
        self._by_name: dict[str, str | None] = {}
        for key in table:
            for alias in {os.path.basename(key), os.path.splitext(os.path.basename(key))[0]}:
                self._by_name[alias] = key if alias not in self._by_name else None  # None: ambiguous

    def boxes_for(self, path: str) -> torch.Tensor:
        if path in self.table:
            return self.table[path]
        name = os.path.basename(path)
        for alias in (name, os.path.splitext(name)[0]):
            key = self._by_name.get(alias)
            if key is not None:
                return self.table[key]
        raise MissingProposalsError(f"{self.source} has no boxes for image {path}")
