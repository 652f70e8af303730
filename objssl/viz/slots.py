"""What SlotCon's prototypes learned: for some prototypes, the images where each is strongest, with
its mask overlaid (the official ``viz_slots.py``, as a function and a PNG)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.utils import make_grid

from objssl.images.decode import BadImageError, load_rgb
from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["prototype_scores", "render_prototypes", "most_used_prototypes"]


def _teacher_scores(method, x: Tensor) -> Tensor:
    """Teacher prototype scores ``[B, K, h, w]`` (cosine) of a normalised batch."""
    return method.teacher_scores(x)


@torch.no_grad()
def prototype_scores(
    method, paths: Sequence[str], *, batch_size: int = 16
) -> tuple[Tensor, Tensor, list[str]]:
    """Score every image for every prototype.

    Images are resized (short side ``size * 256 / 224``) and centre-cropped to the method's
    ``image_size``. ``score[n, k]`` = mean cosine of prototype k over the pixels it wins in image n
    (its mean over all pixels when it wins none, as the official +1e-6 smoothing gives).

    Returns:
        ``(scores [N, K], crops uint8 [N, 3, S, S], used paths)``; unreadable images are skipped.
    """
    size = int(method.image_size)
    prep = v2.Compose([v2.PILToTensor(), v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size)])
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    crops, used = [], []
    for p in paths:
        try:
            crops.append(prep(load_rgb(p)))
            used.append(p)
        except BadImageError:
            continue
    if not crops:
        raise ValueError("viz slots: none of the images could be read")
    images = torch.stack(crops)
    scores = []
    for i in range(0, len(images), batch_size):
        x = norm(images[i: i + batch_size].float() / 255)
        dots = _teacher_scores(method, x)
        mask = F.one_hot(dots.argmax(1), dots.shape[1]).permute(0, 3, 1, 2).float() + 1e-6
        scores.append((dots * mask).sum((2, 3)) / mask.sum((2, 3)))
    return torch.cat(scores), images, used


@torch.no_grad()
def most_used_prototypes(method, images: Tensor, n: int, *, batch_size: int = 16) -> list[int]:
    """The ``n`` prototypes that win pixels in the most images (ties: lower index first)."""
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    counts = None
    for i in range(0, len(images), batch_size):
        dots = _teacher_scores(method, norm(images[i: i + batch_size].float() / 255))
        present = F.one_hot(dots.argmax(1).flatten(1), dots.shape[1]).amax(1)  # [B, K]
        counts = present.sum(0) if counts is None else counts + present.sum(0)
    order = sorted(range(len(counts)), key=lambda k: (-int(counts[k]), k))
    return order[:n]


@torch.no_grad()
def render_prototypes(
    method, images: Tensor, scores: Tensor, prototypes: Sequence[int], *, topk: int = 5, alpha: float = 0.6
) -> Tensor:
    """A grid, one column per prototype and ``topk`` rows, of the images where it scores highest with
    the pixels it wins tinted red. ``-> uint8 [3, H, W]``."""
    topk = min(topk, len(images))
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    tiles = []
    order = scores[:, list(prototypes)].topk(topk, dim=0).indices  # [topk, P]
    for row in range(topk):
        for col, proto in enumerate(prototypes):
            img = images[order[row, col]]
            dots = _teacher_scores(method, norm(img[None].float() / 255))
            dots = F.interpolate(dots, size=img.shape[-2:], mode="bilinear", align_corners=False)
            won = (dots.argmax(1)[0] == proto)[None]
            red = torch.tensor([255.0, 0.0, 0.0]).view(3, 1, 1)
            tinted = torch.where(won, (1 - alpha) * img.float() + alpha * red, img.float())
            tiles.append(tinted.round().to(torch.uint8))
    return make_grid(tiles, nrow=len(prototypes), padding=4, pad_value=255)
