"""The unlabeled image dataset every method trains on.

Images are decoded robustly (:func:`objssl.images.decode.load_rgb`). A file that cannot be used (corrupt,
truncated, too small) is skipped with a logged warning and replaced by the next image, so one bad
file never stops a run; each sample reports how many files were skipped to produce it, and the
trainer adds these up.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from objssl.images.decode import BadImageError, load_rgb

__all__ = ["ImageDataset", "seeded"]

log = logging.getLogger(__name__)


class seeded:
    """Context manager: run a block with torch's and python's RNGs seeded, then restore them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._torch = torch.random.get_rng_state()
        self._py = random.getstate()
        torch.random.manual_seed(self.seed)
        random.seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._torch)
        random.setstate(self._py)


class ImageDataset(Dataset):
    """Images from a list of paths, passed through ``transform``.

    Args:
        paths: image files, or images in tar shards named ``<shard>.tar/<key>`` (see
            :func:`objssl.images.sources.list_images`); both are read by :func:`load_rgb`.
        transform: ``PIL.Image → dict`` (a method's view transform).
        min_side: images with a shorter side are skipped (counted and logged).
        max_skips: how many consecutive bad files to skip before giving up on one sample.

    ``dataset[i]`` or ``dataset[(i, seed)]``: with a seed, the transform's randomness is seeded
    with it (see :class:`objssl.data.sampler.ResumableBatchSampler`). A transform with the attribute
    ``wants_meta = True`` is called as ``transform(image, {"index": i, "path": path})``. The returned dict has the
    transform's fields plus ``index`` (the image used) and ``skipped`` (bad files passed over).
    """

    def __init__(
        self,
        paths: Sequence[str],
        transform: Callable[[Any], dict[str, Any]],
        *,
        min_side: int = 32,
        max_skips: int = 50,
    ) -> None:
        if not paths:
            raise ValueError("ImageDataset needs at least one image path")
        self.paths = list(paths)
        self.transform = transform
        self.min_side = min_side
        self.max_skips = max_skips
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> tuple[int, Any, int]:
        skipped = 0
        for attempt in range(min(self.max_skips, len(self.paths)) + 1):
            i = (index + attempt) % len(self.paths)
            try:
                return i, load_rgb(self.paths[i], min_side=self.min_side), skipped
            except BadImageError as exc:
                skipped += 1
                if i not in self._warned:  # once per file and worker
                    self._warned.add(i)
                    log.warning("skipping bad image (replaced by the next one): %s", exc)
        raise RuntimeError(
            f"{skipped} consecutive images starting at {self.paths[index]!r} are unreadable; "
            "check the data set"
        )

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        i, image, skipped = self._load(int(index))
        # transforms that need to know which image this is (to look up its proposals, say)
        # declare ``wants_meta = True`` and get ``meta={"index", "path"}``
        args = (image, {"index": i, "path": self.paths[i]}) if getattr(self.transform, "wants_meta", False) else (image,)
        if seed is None:
            sample = self.transform(*args)
        else:
            with seeded(seed):
                sample = self.transform(*args)
        sample["index"] = i
        sample["skipped"] = skipped
        return sample
