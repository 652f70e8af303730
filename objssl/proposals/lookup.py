"""Opening the proposals a training run reads (``data.proposals``) and checking they cover its images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from objssl.errors import ConfigError
from objssl.proposals.base import MissingProposalsError

__all__ = ["open_proposals", "missing_images"]


def open_proposals(path: str | None) -> Any:
    """A box lookup (``boxes_for(path) -> Tensor[M, 4]``) from a proposal cache folder or a JSON file of
    boxes, or None for ``path=None``. A path that does not exist is a :class:`ConfigError`."""
    if path is None:
        return None
    from objssl.proposals.builtin import PrecomputedSource
    from objssl.proposals.cache import ProposalCache

    if os.path.isdir(path):
        return ProposalCache(path)
    if os.path.isfile(path):
        return PrecomputedSource(path)
    raise ConfigError(f"data.proposals={path!r} does not exist (build a cache with `objssl proposals`)")


def missing_images(lookup: Any, paths: Sequence[str]) -> list[str]:
    """The paths ``lookup`` has no entry for (a cache is asked for its index only, no boxes are read)."""
    find = getattr(lookup, "index_of", None) or lookup.boxes_for
    missing = []
    for path in paths:
        try:
            find(path)
        except MissingProposalsError:
            missing.append(path)
    return missing
