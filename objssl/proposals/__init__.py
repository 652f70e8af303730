"""Region proposals: the source contract, built-in sources, plugin discovery, filters and the cache.

Layering: this package sits below :mod:`objssl.data` and imports nothing from it (images are read
through :mod:`objssl.images`).

    from objssl.proposals import create_source
    source = create_source("selective_search", mode="fast")   # a plugin (objssl-selective-search)
    proposals = source(rgb_uint8_array)                        # Proposals(boxes=float32 [K, 4] xyxy)

Sources are found in :data:`objssl.registry.PROPOSALS`: built-ins (``random``, ``grid``,
``precomputed``) and plugins declared in the entry-point group ``objssl.proposals``.
"""

from __future__ import annotations

import difflib
from typing import Any

from objssl.errors import ConfigError
from objssl.proposals import builtin, filters  # noqa: F401 - registers the built-in sources
from objssl.proposals.base import (
    InvalidBoxesError,
    MissingProposalsError,
    Proposals,
    ProposalSource,
    check_image,
    constructor_params,
    image_seed,
    stable_hash,
)
from objssl.proposals.builtin import GridSource, PrecomputedSource, RandomSource, random_boxes
from objssl.proposals.cache_builder import CacheSummary, SourceNotImportableError, build_cache
from objssl.proposals.cache_format import ProposalCacheError
from objssl.proposals.cache_reader import ProposalCache
from objssl.proposals.checks import check_proposal_source
from objssl.proposals.lookup import check_coverage, missing_images, open_proposals
from objssl.registry import PROPOSALS, PluginLoadError

__all__ = [
    "open_proposals", "missing_images", "check_coverage",
    "Proposals", "ProposalSource", "MissingProposalsError", "InvalidBoxesError", "check_image",
    "image_seed", "stable_hash",
    "RandomSource", "GridSource", "PrecomputedSource", "random_boxes",
    "ProposalCache", "ProposalCacheError", "CacheSummary", "SourceNotImportableError", "build_cache",
    "create_source", "describe_sources", "check_proposal_source", "filters",
]


def create_source(name: str, **params: Any) -> ProposalSource:
    """The proposal source registered as ``name``, built with ``params``.

    Raises:
        UnknownNameError: no such source (the message lists the known ones).
        PluginLoadError: the plugin providing it failed to import (the message names it).
        ConfigError: a parameter name the source's constructor does not take (with the closest
            valid name and all of them).
        ValueError: the source rejected ``params``.
    """
    cls = PROPOSALS.get(name)
    accepted = constructor_params(cls) if isinstance(cls, type) else None
    if accepted is not None:
        for key in params:
            if key not in accepted:
                close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                valid = ", ".join(accepted) if accepted else "(none)"
                raise ConfigError(
                    f"proposal source {name!r}: unexpected keyword parameter {key!r}{hint} "
                    f"Its parameters: {valid}"
                )
    try:
        source = cls(**params)
    except TypeError as exc:  # wrong keyword: say which source and what it accepts
        raise ValueError(f"proposal source {name!r}: {exc}") from None
    if not isinstance(source, ProposalSource):
        raise TypeError(f"proposal source {name!r} built {type(source).__name__}, not a ProposalSource")
    return source


def describe_sources() -> list[tuple[str, str, str]]:
    """``(name, origin, status)`` for every source: built-in or plugin, and whether it loads.

    Plugins are imported here (that is the only way to know they work); one that fails is reported
    with its error instead of breaking the listing.
    """
    rows = []
    for name in PROPOSALS.names():
        origin = PROPOSALS.plugin_origin(name) or "built-in"
        try:
            cls = PROPOSALS.get(name)
            status = f"ok (version {getattr(cls, 'version', '?')})"
        except PluginLoadError as exc:
            status = f"unavailable: {exc}"
        rows.append((name, origin, status))
    listed = {r[0] for r in rows}
    for name, msg in sorted(PROPOSALS.load_errors.items()):
        if "failed to load" not in msg:  # a plugin that lost a name clash to a built-in
            rows.append((name, "plugin", f"shadowed: {msg}"))
        elif name not in listed:
            rows.append((name, "plugin", f"unavailable: {msg}"))
    return rows
