"""Config keys checked against a constructor, before anything is built: names, types, sizes.

A key must be a keyword of the constructor; its value must have the type of the keyword's default
(an ``int`` for ``image_size=224``; an int also passes for a float default; a list for a tuple default);
sizes and dimensions (``*_dim``, ``*_channels``, ``num_*``, ``k``) must be positive and ``image_size``
at least 32. Every failure is a one-line :class:`objssl.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from objssl.errors import ConfigError

__all__ = ["accepted_keys", "check_arguments", "suggest", "MIN_IMAGE_SIZE"]

#: smallest view side: a stride-32 backbone must still give a map
MIN_IMAGE_SIZE = 32


def suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def accepted_keys(fn: Callable[..., Any], skip: tuple[str, ...] = ("self", "backbone")) -> tuple[dict[str, Any], bool]:
    """``({keyword: default or inspect.Parameter.empty}, takes **kwargs)`` of ``fn`` (a class: its ``__init__``)."""
    params = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters
    keys = {n: p.default for n, p in params.items()
            if n not in skip and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    return keys, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _is_size_key(key: str) -> bool:
    return key == "k" or key.endswith(("_dim", "_channels", "_size")) or key.startswith("num_")


def _type_error(value: Any, default: Any) -> str | None:
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, (tuple, list)):
        return None if isinstance(value, (tuple, list)) else "a list"
    return None


def check_arguments(fn: Callable[..., Any], values: Mapping[str, Any], where: str, owner: str) -> None:
    """Check ``values`` (config keys → values) against ``fn``'s keywords.

    Args:
        where: the config path of the mapping, e.g. ``"method"`` or ``"method.objectives[1]"``.
        owner: what takes them, for messages (``"method 'soco'"``).
    """
    keys, var_kw = accepted_keys(fn)
    valid = sorted(keys)
    for key, value in values.items():
        if key not in keys:
            if var_kw:
                continue
            raise ConfigError(f"unknown config key '{where}.{key}' for {owner}.{suggest(key, valid)} "
                              f"Valid keys: {', '.join(valid)}")
        default = keys[key]
        wanted = _type_error(value, default)
        if wanted:
            raise ConfigError(f"{where}.{key}={value!r}: {owner} expects {wanted} (default {default!r})")
        if _is_size_key(key) and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"{where}.{key}={value!r}: must be positive")
        if key == "image_size" and isinstance(value, int) and value < MIN_IMAGE_SIZE:
            raise ConfigError(f"{where}.image_size={value!r}: must be at least {MIN_IMAGE_SIZE} pixels")
    missing = [k for k, d in keys.items() if d is inspect.Parameter.empty and k not in values]
    if missing:
        raise ConfigError(f"{where}: {owner} needs {', '.join(missing)}")
