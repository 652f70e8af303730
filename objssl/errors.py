"""Errors meant for users: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "DataError"]


class UserError(ValueError):
    """Bad input from the user (a path, a name, a parameter). The message says what and where."""


class ConfigError(UserError):
    """A configuration file or override that cannot be used (unknown key, wrong type)."""


class DataError(UserError):
    """A data path that is missing, empty or malformed."""
