"""The batch's JPEGs decoded on the training device (:class:`DecodeOnDevice`), before its views are made.

Loader workers with ``decode_on="device"`` send each image's encoded bytes (``encoded``) with the
parameters drawn from its header; here :func:`objssl.images.batch_decode.decode_batch` decodes them in
one batched call (nvJPEG on a GPU; other formats and odd JPEGs by Pillow, per file) at full size, and
they are padded into ``source`` for :class:`~objssl.data.device.augment.DeviceAugment`.

A file whose header was fine but whose data does not decode is found only here, after the batch was
made: its sample is replaced by another sample of the same batch (every per-sample field, so boxes and
parameters stay with their image) and counted in that sample's ``skipped`` (the trainer adds it to
``images_skipped``); the batch keeps its size. A batch with no decodable image is a
:class:`~objssl.errors.DataError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from objssl.data.device.geometry import pad_images
from objssl.errors import DataError
from objssl.images.batch_decode import decode_batch
from objssl.images.decode import BadImageError

__all__ = ["DecodeOnDevice", "take_samples"]

log = logging.getLogger(__name__)

#: batch-level fields: totals over the batch, not one entry per sample
_BATCH_TOTALS = ("counters",)


def take_samples(batch: Any, rows: list[int], size: int) -> Any:
    """``batch`` with its samples re-picked by ``rows`` (``len(rows) == size``, the batch size): every
    tensor whose first dimension is ``size`` and every list of ``size`` per-sample values (nested in
    dicts and per-view lists)."""
    if isinstance(batch, Tensor):
        return batch[torch.as_tensor(rows, device=batch.device)] if batch.ndim and batch.shape[0] == size else batch
    if isinstance(batch, Mapping):
        return {k: v if k in _BATCH_TOTALS else take_samples(v, rows, size) for k, v in batch.items()}
    if isinstance(batch, list):
        if len(batch) == size and batch and not isinstance(batch[0], (Tensor, Mapping, list)):
            return [batch[r] for r in rows]  # per-sample values (bytes, paths)
        return [take_samples(v, rows, size) for v in batch]  # per-view lists
    return batch


class DecodeOnDevice:
    """``batch with "encoded" → batch with "source"``, then ``augment`` (the views).

    Args:
        augment: what makes the views (the transform's ``device_views``).
        min_side: images with a shorter side are bad images, as in the loader.
    """

    def __init__(self, augment: Callable[[dict[str, Any]], dict[str, Any]], min_side: int = 1) -> None:
        self.augment, self.min_side = augment, int(min_side)
        self._warned: set[str] = set()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if "encoded" not in batch:
            return self.augment(dict(batch))
        device = batch["skipped"].device if isinstance(batch.get("skipped"), Tensor) else torch.device("cpu")
        paths = batch.get("encoded_path") or [f"<image {i}>" for i in range(len(batch["encoded"]))]
        images = decode_batch(batch["encoded"], paths, device=device, min_side=self.min_side)
        drawn_for = batch["encoded_hw"].tolist() if "encoded_hw" in batch else [None] * len(images)
        for i, (im, hw) in enumerate(zip(images, drawn_for)):
            if not isinstance(im, BadImageError) and hw is not None and list(im.shape[-2:]) != hw:
                # the parameters were drawn for the header's size: they would not fit this image
                images[i] = BadImageError(paths[i], f"decoded as {tuple(im.shape[-2:])}, its header says {tuple(hw)}")
        good = [i for i, im in enumerate(images) if not isinstance(im, BadImageError)]
        bad = [i for i, im in enumerate(images) if isinstance(im, BadImageError)]
        if not good:
            raise DataError(f"no image of a batch of {len(images)} decodes (e.g. {images[0]}); check the data set")
        out = {k: v for k, v in batch.items() if k not in ("encoded", "encoded_path", "encoded_hw")}
        if bad:
            for i in bad:
                if paths[i] not in self._warned:  # once per file and process
                    self._warned.add(paths[i])
                    log.warning("skipping bad image (replaced by another image of its batch): %s", images[i])
            # each bad sample takes a good one's place, spread over the good ones
            rows = [good[i % len(good)] if isinstance(images[i], BadImageError) else i for i in range(len(images))]
            out = take_samples(out, rows, len(images))
            images = [images[r] for r in rows]
            skipped = out["skipped"].clone()
            skipped[torch.as_tensor(bad, device=skipped.device)] += 1
            out["skipped"] = skipped
        out["source"], out["source_hw"] = pad_images(images)
        return self.augment(out)
