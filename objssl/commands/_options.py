"""Option parsing shared by several subcommands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from objssl.errors import UserError


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=[2, 3]"]`` → ``{"a": 1, "b": [2, 3]}``; values are read as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {item!r} is not of the form KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"{flag} {item!r}: cannot read the value ({exc.problem})") from None
    return out
