"""Opening the proposals a training run reads (``data.proposals``) and checking they cover its images.

Both are index lookups: a cache is asked for its ``images.txt`` keys only, no boxes are read, so
checking 100k images takes about a second (a dict lookup per path, a ``realpath`` only for paths
that miss the cheap key).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from objssl.errors import ConfigError, DataError
from objssl.proposals.base import MissingProposalsError
from objssl.proposals.builtin import PrecomputedSource
from objssl.proposals.cache_reader import ProposalCache
from objssl.proposals.parts_reader import ProposalCacheParts, holds_parts

__all__ = ["open_proposals", "missing_images", "check_coverage"]

_SHOW = 3  # how many missing images an error names


def open_proposals(path: str | None) -> Any:
    """A box lookup (``boxes_for(path) -> Tensor[M, 4]``) from a proposal cache folder, a folder holding
    the ``part-*`` folders of a sharded build (read in place), or a JSON file of boxes, or None for
    ``path=None``. A path that does not exist is a :class:`ConfigError`; a cache
    that is unfinished or corrupt raises :class:`~objssl.proposals.ProposalCacheError` naming the file."""
    if path is None:
        return None
    if os.path.isdir(path) and holds_parts(path):  # the parts of a sharded build, not merged
        return ProposalCacheParts(path)
    if os.path.isdir(path):
        return ProposalCache(path)
    if os.path.isfile(path):
        return PrecomputedSource(path)
    raise ConfigError(f"data.proposals={path!r} does not exist (build a cache with `objssl proposals`)")


def missing_images(lookup: Any, paths: Sequence[str]) -> list[str]:
    """The paths ``lookup`` has no entry for (a cache is asked for its index only, no boxes are read)."""
    find = getattr(lookup, "find", None)
    if find is not None:  # a ProposalCache: None for a miss, no exception per image
        return [p for p in paths if find(p) is None]
    missing = []
    for path in paths:
        try:
            lookup.boxes_for(path)
        except MissingProposalsError:
            missing.append(path)
    return missing


def check_coverage(lookup: Any, paths: Sequence[str], *, data: str | None = None,
                   where: str = "data.proposals") -> None:
    """Raise a one-line :class:`DataError` if ``lookup`` lacks boxes for any of ``paths``.

    The message gives the count, the first few missing images and how to add them: for a cache,
    the ``objssl proposals`` command that built it, pointed at ``data`` (the run's data path) and
    the same ``--out``; a rerun on that superset of the cache's images computes only the new ones.
    """
    missing = missing_images(lookup, paths)
    if not missing:
        return
    shown = ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
    if isinstance(lookup, ProposalCache):
        fix = f"add them with: {lookup.rebuild_command(data or 'DATA')}"
        name = f"proposal cache {lookup.path}"
    elif isinstance(lookup, ProposalCacheParts):
        fix = "build the parts again with the run's data (--num-shards, --shard-index) in a new folder"
        name = f"proposal cache parts {lookup.path}"
    else:
        fix = "add their boxes to the file, or build a cache with `objssl proposals`"
        name = f"proposal file {getattr(lookup, 'path', lookup)}"
    raise DataError(
        f"{where}: {name} has no boxes for {len(missing)} of the {len(paths)} images ({shown}); {fix}"
    )
