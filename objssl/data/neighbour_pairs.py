"""ORL's stage-3 dataset: each image with one of its nearest neighbours and their stored box pairs.

For image ``i`` (``ORL:openselfsup/datasets/data_sources/coco_orl_json.py``, ``get_sample``): one of its
``k`` neighbour slots is drawn uniformly, the neighbour image is read, and image ``i``'s boxes and the
slot's stored pairs go with both images to :class:`objssl.data.roi_pair_views.RoIPairViews`. Boxes,
neighbours and pairs come from stage 2's folder (:class:`objssl.correspondence.store.CorrespondenceStore`).

A bad image ``i`` is skipped and replaced by the next one, as in :class:`objssl.data.dataset.ImageDataset`
(whose loading this reuses). A neighbour that cannot be read is skipped the same way — counted in
``skipped`` and replaced by the next slot's neighbour (with that slot's pairs); when none of the ``k``
can be read, the inter-RoI pair falls back to the intra-RoI pair (event ``no_neighbour``).

With a device-mode transform (``RoIPairViews(augment_on="device")``) the transform only draws (from
the two images' sizes) and the sample carries the decoded pixels, ``source`` (the image) and
``neighbour_source`` (the neighbour; :data:`NO_NEIGHBOUR` when none could be read, never cut from:
every patch's ``patch_source`` is then the image), both ``uint8 [3, H, W]``. Both images are decoded
at full size (``ImageDataset._load`` without a reduction: no decode bound over the two views and the
four patches, from two images, is worked out), and the draws are made from the decoded sizes, as
the loader path's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchvision.transforms.v2 import functional as TF

from objssl.data.dataset import ImageDataset, seeded
from objssl.data.roi_pair_views import RoIPairViews
from objssl.images.decode import BadImageError, load_rgb

if TYPE_CHECKING:
    from objssl.correspondence.store import CorrespondenceStore

__all__ = ["NeighbourPairDataset", "NO_NEIGHBOUR"]

#: ``neighbour_source`` of a device-mode sample without a neighbour: one black pixel (no patch reads it)
NO_NEIGHBOUR = torch.zeros(3, 1, 1, dtype=torch.uint8)

log = logging.getLogger(__name__)


class NeighbourPairDataset(ImageDataset):
    """Images of ``paths`` with a neighbour each, through ``views``.

    Args:
        paths: the training images; each must be in ``store`` (:meth:`CorrespondenceStore.index_of`).
        store: the stage-2 folder, opened.
        views: the per-sample transform (:class:`RoIPairViews`).
        min_side, max_skips: as :class:`ImageDataset` (``min_side`` applies to neighbours too).

    ``dataset[(i, seed)]``: every draw (slot, boxes, pair, augmentations) is seeded with ``seed``. The
    sample has the fields of :class:`RoIPairViews` plus ``index`` (the image used), ``neighbour``
    (the neighbour's index in the store, -1 for none) and ``skipped`` (bad files passed over, neighbours
    included); in device mode also ``source`` and ``neighbour_source`` (module docstring).

    Raises:
        KeyError: an image of ``paths`` is not in ``store`` (the method's ``check_data`` says so first).
    """

    def __init__(self, paths: Sequence[str], store: CorrespondenceStore, views: RoIPairViews, *,
                 min_side: int = 32, max_skips: int = 50) -> None:
        super().__init__(paths, views, min_side=min_side, max_skips=max_skips)
        self.store = store
        self.rows = [store.index_of(p) for p in self.paths]
        self._bad_neighbours: set[int] = set()

    def _neighbour(self, row: int, slot: int) -> tuple[int, Any, int, int]:
        """``(slot used, image or None, its store index or -1, neighbours skipped)`` from ``slot`` on."""
        order = self.store.neighbours(row)
        skipped = 0
        for t in range(len(order)):
            s = (slot + t) % len(order)
            j = int(order[s])
            try:
                return s, load_rgb(self.store.images[j], min_side=self.min_side), j, skipped
            except BadImageError as exc:
                skipped += 1
                if j not in self._bad_neighbours:  # once per file and worker
                    self._bad_neighbours.add(j)
                    log.warning("skipping bad neighbour image (replaced by the next neighbour): %s", exc)
        return -1, None, -1, skipped

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        i, image, skipped = self._load(int(index))
        row = self.rows[i]
        with seeded(seed) if seed is not None else contextlib.nullcontext():
            k = self.store.k
            slot = int(torch.randint(k, ())) if k > 0 else 0
            slot, neighbour, j, bad = self._neighbour(row, slot) if k > 0 else (-1, None, -1, 0)
            pairs = self.store.pairs(row, slot)[:2] if neighbour is not None else None
            sample = self.transform(image, self.store.boxes(row), neighbour, pairs)
        if self.device_mode:
            sample["source"] = TF.pil_to_tensor(image)
            sample["neighbour_source"] = NO_NEIGHBOUR if neighbour is None else TF.pil_to_tensor(neighbour)
        sample["index"] = i
        sample["neighbour"] = j
        sample["skipped"] = skipped + bad
        return sample
