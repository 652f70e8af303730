"""Reading the parts of a sharded build in place, without merging them: :class:`ProposalCacheParts`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from objssl.proposals.base import MissingProposalsError
from objssl.proposals.parts import _expand, _open_parts

__all__ = ["ProposalCacheParts", "holds_parts"]


def holds_parts(path: str) -> bool:
    """Whether folder ``path`` is no cache itself but holds ``part-*-of-*`` cache folders."""
    return _expand([path]) != [path]


class ProposalCacheParts:
    """The parts of one sharded build (folders, or a folder of ``part-*`` folders) read as one cache.

    Every part is verified on opening, and they must form one whole build (the same checks as
    :func:`objssl.proposals.parts.merge_parts`: a missing, repeated, foreign or corrupt part is named).
    Image ``i`` is image ``i`` of the merged cache. A lookup by path asks each part in turn (a dict
    lookup each), so a merged cache is faster for many parts.
    """

    def __init__(self, paths: str | Sequence[str]) -> None:
        given = [paths] if isinstance(paths, str) else list(paths)
        self.path = ", ".join(given)
        opened = _open_parts(_expand(given))
        self.parts = [cache for _, cache, _ in opened]
        self.first = [part["first_image"] for _, _, part in opened]
        self.num_images = opened[0][2]["num_images"]

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return f"ProposalCacheParts({self.path!r}, parts={len(self.parts)}, images={len(self)})"

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.num_images:
            raise IndexError(f"proposal cache parts {self.path} hold {self.num_images} images, asked for {i}")
        p = max(j for j, first in enumerate(self.first) if first <= i)
        return p, i - self.first[p]

    def boxes(self, i: int) -> torch.Tensor:
        p, local = self._locate(i)
        return self.parts[p].boxes(local)

    def find(self, path: str) -> int | None:
        for first, cache in zip(self.first, self.parts):
            local = cache.find(path)
            if local is not None:
                return first + local
        return None

    def boxes_for(self, path: str) -> torch.Tensor:
        i = self.find(path)
        if i is None:
            raise MissingProposalsError(f"proposal cache parts {self.path} have no entry for image {path}")
        return self.boxes(i)
