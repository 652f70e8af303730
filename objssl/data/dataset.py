"""The unlabeled image dataset every method trains on.

Images are decoded robustly (:func:`objssl.images.decode.load_rgb`). A file that cannot be used (corrupt,
truncated, too small) is skipped with a logged warning and replaced by the next image, so one bad
file never stops a run; each sample reports how many files were skipped to produce it, and the
trainer adds these up.

A transform whose ``augment_on`` is ``"device"`` (its views are made on the training device,
docs/device_views.md) is called with the image's ``(height, width)`` alone, as soon as the file's
header is read; it draws every parameter from that, and the dataset then decodes the image, reduced
where the draws allow it (:meth:`objssl.data.device.augment.DeviceAugment.max_reduction`; JPEG draft
mode), and attaches it as ``source`` (``uint8 [3, h, w]``), the crops moved onto the decoded size.
The draws are the loader path's for the same seed: a file that fails to decode after its header was
read is skipped and the next image gets the same seed, as with the loader path.

With ``decode_on="device"`` (JPEGs decoded in batches on the GPU, ``data.decode``) the worker does not
decode at all: it reads the file's bytes and header, draws, and attaches ``encoded`` (the bytes) and
``encoded_path``; :class:`objssl.data.device.encoded.DecodeOnDevice` decodes the batch at full size.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from objssl.images.decode import BadImageError, encoded_size, load_rgb, read_encoded

__all__ = ["ImageDataset", "seeded"]

log = logging.getLogger(__name__)


class seeded:
    """Context manager: run a block with torch's and python's RNGs seeded, then restore them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._torch = torch.random.get_rng_state()
        self._py = random.getstate()
        # the CPU generator alone: torch.manual_seed also queues seeds for every accelerator backend
        # and formats a stack trace for each (~0.7 ms per sample); the CPU stream is the same
        torch.default_generator.manual_seed(self.seed)
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
        reduced_decode: for a device-mode transform, decode JPEGs reduced where its draws allow
            (module docstring); off: always at full size.
        decode_on: for a device-mode transform, ``"loader"`` (Pillow, here) or ``"device"`` (send the
            encoded bytes; module docstring).

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
        reduced_decode: bool = True,
        decode_on: str = "loader",
    ) -> None:
        if not paths:
            raise ValueError("ImageDataset needs at least one image path")
        self.paths = list(paths)
        self.transform = transform
        self.min_side = min_side
        self.max_skips = max_skips
        self.reduced_decode = reduced_decode
        if decode_on not in ("loader", "device"):
            raise ValueError(f"ImageDataset: decode_on must be 'loader' or 'device', got {decode_on!r}")
        self.decode_on = decode_on
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def device_mode(self) -> bool:
        """Whether the transform's views are made on the training device (module docstring)."""
        return getattr(self.transform, "augment_on", "loader") == "device"

    def _first_good(self, index: int, read: Callable[[int], Any]) -> tuple[int, Any, int]:
        """``(image used, read(image), bad files passed over)`` for the first image from ``index`` on
        that ``read`` does not refuse with :class:`BadImageError` (each bad one logged once)."""
        skipped = 0
        for attempt in range(min(self.max_skips, len(self.paths)) + 1):
            i = (index + attempt) % len(self.paths)
            try:
                return i, read(i), skipped
            except BadImageError as exc:
                skipped += 1
                if i not in self._warned:  # once per file and worker
                    self._warned.add(i)
                    log.warning("skipping bad image (replaced by the next one): %s", exc)
        raise RuntimeError(
            f"{skipped} consecutive images starting at {self.paths[index]!r} are unreadable; "
            "check the data set"
        )

    def _load(self, index: int, reduction: Callable[[int], Any] | None = None) -> tuple[int, Any, int]:
        """``(image used, decoded image, bad files passed over)`` from ``index`` on; ``reduction(i)``
        gives image ``i``'s ``max_reduction`` for :func:`load_rgb`."""
        def decode(i: int) -> Any:
            r = 1 if reduction is None else reduction(i)
            return load_rgb(self.paths[i], min_side=self.min_side, max_reduction=r)
        return self._first_good(index, decode)

    def _call_transform(self, image: Any, i: int, seed: int | None) -> dict[str, Any]:
        # transforms that need to know which image this is (to look up its proposals, say)
        # declare ``wants_meta = True`` and get ``meta={"index", "path"}``
        args = (image, {"index": i, "path": self.paths[i]}) if getattr(self.transform, "wants_meta", False) else (image,)
        if seed is None:
            return self.transform(*args)
        with seeded(seed):
            return self.transform(*args)

    def _device_sample(self, index: int, seed: int | None) -> tuple[int, dict[str, Any], int]:
        """Draw from the header's size, then decode (reduced where allowed) and attach ``source``."""
        drawn: dict[int, tuple[dict[str, Any], tuple[int, int]]] = {}

        def reduction(i: int) -> Any:
            def draw(h: int, w: int) -> int:
                sample = self._call_transform((h, w), i, seed)
                drawn[i] = sample, (h, w)
                return self.transform.device_views.max_reduction(sample) if self.reduced_decode else 1
            return draw

        i, image, skipped = self._load(index, reduction)
        sample, (H, W) = drawn[i]
        source = TF.pil_to_tensor(image)
        h, w = (int(n) for n in source.shape[-2:])
        if (h, w) != (H, W):
            self.transform.device_views.rescale(sample, w / W, h / H)
        sample["source"] = source
        return i, sample, skipped

    def _encoded_sample(self, index: int, seed: int | None) -> tuple[int, dict[str, Any], int]:
        """Read the bytes and the header, draw, attach ``encoded`` (decoded later, on the device)."""
        def header(i: int) -> tuple[bytes, tuple[int, int]]:
            data = read_encoded(self.paths[i])
            return data, encoded_size(data, self.paths[i], min_side=self.min_side)

        i, (data, hw), skipped = self._first_good(index, header)
        sample = self._call_transform(hw, i, seed)
        sample["encoded"], sample["encoded_path"] = data, self.paths[i]
        sample["encoded_hw"] = torch.tensor(hw)  # what was drawn for; the device checks the decode
        return i, sample, skipped

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if self.device_mode:
            read = self._encoded_sample if self.decode_on == "device" else self._device_sample
            i, sample, skipped = read(int(index), seed)
            sample["index"] = i
            sample["skipped"] = skipped
            return sample
        i, image, skipped = self._load(int(index))
        sample = self._call_transform(image, i, seed)
        sample["index"] = i
        sample["skipped"] = skipped
        return sample
