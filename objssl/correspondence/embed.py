"""Stage 2c: every kept box of every image embedded once, batched across images.

Embedding (``ORL:openselfsup/models/correspondence.py``): 224×224 crop → backbone → pooled deepest
map (res5, global average pool) → L2-normalised. Crops of consecutive images fill one backbone
batch; the result is split back per image.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from objssl.correspondence.crops import roi_crops

__all__ = ["embed_boxes"]


@torch.no_grad()
def embed_boxes(
    encode: Callable[[torch.Tensor], torch.Tensor],
    items: Iterable[tuple[torch.Tensor | None, torch.Tensor]],
    *, batch_size: int = 64, size: int = 224, device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[torch.Tensor]:
    """For each ``(image [3, H, W] normalised or None, boxes [M, 4] xyxy)`` yield float32
    ``[M, C]`` L2-normalised embeddings (``[0, C]`` when there is no box or no image), in order.

    ``encode``: crops ``[B, 3, size, size]`` → pooled ``[B, C]``. Crops of several images share a
    batch of at most ``batch_size``; ``autocast_dtype`` (e.g. bfloat16 on a GPU) runs ``encode``
    under autocast.
    """
    device = torch.device(device)
    waiting: list[torch.Tensor] = []  # crops not yet encoded, in order
    n_waiting = 0
    owners: deque[int] = deque()  # crops per image not yet emitted, in order
    encoded: list[torch.Tensor] = []  # embeddings not yet emitted, in order
    n_encoded = 0
    dim: int | None = None

    def encode_rows(n: int) -> None:
        nonlocal n_waiting, n_encoded, dim
        crops = torch.cat(waiting)
        waiting[:] = [crops[n:]] if crops.shape[0] > n else []
        n_waiting -= n
        ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            out = encode(crops[:n])
        out = F.normalize(out.float(), dim=1).cpu()
        dim = out.shape[1]
        encoded.append(out)
        n_encoded += n

    def emit(final: bool) -> Iterator[torch.Tensor]:
        nonlocal n_encoded
        while owners and owners[0] <= n_encoded and (dim is not None or final):
            m = owners.popleft()
            rows = torch.cat(encoded) if encoded else torch.zeros(0, dim or 0)
            encoded[:] = [rows[m:]]
            n_encoded -= m
            yield rows[:m]

    for image, boxes in items:
        boxes = boxes.reshape(-1, 4)
        if image is None or boxes.shape[0] == 0:
            owners.append(0)
        else:
            crops = roi_crops(image.to(device), boxes.to(device).float(), size)
            waiting.append(crops)
            n_waiting += crops.shape[0]
            owners.append(crops.shape[0])
        while n_waiting >= batch_size:
            encode_rows(batch_size)
        yield from emit(final=False)
    if n_waiting:
        encode_rows(n_waiting)
    yield from emit(final=True)
