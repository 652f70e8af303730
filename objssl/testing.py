"""Checks for plugin authors: run them in a plugin's own tests (as scikit-learn's ``check_estimator``).

objssl's test suite runs the same functions over everything registered, so a part that passes them
keeps the contract the trainer, the cache builder and the exporters rely on:

* :func:`check_proposal_source` — a proposal source (``objssl.proposals`` entry point);
* :func:`check_objective` — an objective term (``objssl.objectives`` entry point);
* :func:`check_exporter` — an export target (round trip of a real checkpoint).

Each raises an ``AssertionError`` subclass (or the error of the step that broke) naming the rule.
See ``docs/plugins.md``.
"""

from __future__ import annotations

from objssl.export.checks import check_exporter, read_exported_tensors
from objssl.methods.checks import check_objective
from objssl.proposals.checks import ProposalSourceCheckError, check_proposal_source

__all__ = [
    "check_proposal_source",
    "ProposalSourceCheckError",
    "check_objective",
    "check_exporter",
    "read_exported_tensors",
]
