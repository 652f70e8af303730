"""One small generic registry, used for every kind of part.

A :class:`Registry` maps names to objects (classes or factory functions). The same class serves
backbones, necks, heads, losses, objective terms, methods, exporters and proposal sources; registries
that name an entry-point group (``objssl.proposals``, ``objssl.methods``, ``objssl.objectives``) also
discover objects from installed packages, lazily, the first time a name is looked up or listed.

Rules for entry points:

* built-in names win a clash (the plugin is ignored, and the clash is recorded in ``load_errors``);
* a plugin that fails to import does not break listing: it is recorded in ``load_errors`` and
  looking its name up raises :class:`PluginLoadError` naming the plugin and its distribution;
* setting ``OBJSSL_DISABLE_PLUGIN_AUTOLOAD=1`` turns discovery off.

Example::

    from objssl.registry import Registry
    HEADS = Registry("head")

    @HEADS.register("mlp")
    class MLPHead(nn.Module): ...

    head = HEADS.build("mlp", in_dim=2048)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

__all__ = [
    "Registry",
    "UnknownNameError",
    "PluginLoadError",
    "PLUGIN_AUTOLOAD_ENV",
    "all_registries",
    "BACKBONES",
    "NECKS",
    "HEADS",
    "LOSSES",
    "METHODS",
    "OBJECTIVES",
    "PROPOSALS",
    "EXPORTERS",
]

T = TypeVar("T")

#: environment variable that turns entry-point discovery off when set to 1/true/yes
PLUGIN_AUTOLOAD_ENV = "OBJSSL_DISABLE_PLUGIN_AUTOLOAD"

_ALL: dict[str, Registry] = {}


class UnknownNameError(KeyError):
    """A name that is not registered. The message lists the known names and close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


class PluginLoadError(ImportError):
    """An entry-point plugin that is registered under a name but could not be loaded."""


def _autoload_disabled() -> bool:
    return os.environ.get(PLUGIN_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry(Generic[T]):
    """Name → object mapping with helpful errors and optional entry-point discovery.

    Args:
        kind: what is registered, used in messages (``"backbone"``, ``"proposal source"``).
        entry_point_group: if given, installed distributions that declare entry points in this
            group are discovered the first time the registry is queried.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._objs: dict[str, T] = {}
        self._plugin_names: dict[str, str] = {}  # name -> "dist:module:attr" (for messages)
        self._pending: dict[str, metadata.EntryPoint] = {}
        self._discovered = False
        #: name -> message, for plugins that could not be loaded or were shadowed
        self.load_errors: dict[str, str] = {}
        if kind in _ALL:
            raise ValueError(f"a registry for {kind!r} already exists")
        _ALL[kind] = self

    # ------------------------------------------------------------------ registration
    def register(
        self, name: str | None = None, obj: T | None = None, *, override: bool = False
    ) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as ``@reg.register("name")`` or a call.

        Without ``name`` the object's ``__name__`` is used. Registering a taken name raises
        unless ``override=True``.
        """

        def _do(o: T) -> T:
            key = name or getattr(o, "__name__", None)
            if not key:
                raise ValueError(f"cannot infer a name for {o!r}; pass one")
            if key in self._objs and not override and self._objs[key] is not o:
                raise ValueError(f"{self.kind} {key!r} is already registered ({self._objs[key]!r})")
            self._objs[key] = o
            return o

        if obj is not None:
            return _do(obj)
        return _do

    # ------------------------------------------------------------------ discovery
    def _discover(self) -> None:
        if self._discovered or not self.entry_point_group:
            return
        self._discovered = True
        if _autoload_disabled():
            return
        for ep in metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep.dist, "name", None) or "unknown distribution"
            if ep.name in self._objs:
                self.load_errors[ep.name] = (
                    f"plugin {ep.value!r} from {dist!r} is ignored: the built-in "
                    f"{self.kind} {ep.name!r} takes precedence"
                )
                continue
            self._pending[ep.name] = ep
            self._plugin_names[ep.name] = f"{dist}: {ep.value}"

    def _load_pending(self, name: str) -> None:
        ep = self._pending.pop(name)
        try:
            obj = ep.load()
        except Exception as exc:  # any failure inside a third-party import
            msg = (
                f"{self.kind} plugin {name!r} ({self._plugin_names[name]}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            )
            self.load_errors[name] = msg
            raise PluginLoadError(msg) from exc
        self._objs[name] = obj

    def plugin_origin(self, name: str) -> str | None:
        """``"dist: module:attr"`` for a plugin name, None for a built-in."""
        self._discover()
        return self._plugin_names.get(name)

    # ------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        """Every usable name, built-in and discovered (plugins are not imported by this)."""
        self._discover()
        failed = {n for n, m in self.load_errors.items() if "failed to load" in m}
        return sorted((set(self._objs) | set(self._pending)) - failed)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The object registered as ``name``; raises :class:`UnknownNameError` with suggestions."""
        self._discover()
        if name in self._pending:
            self._load_pending(name)
        if name in self._objs:
            return self._objs[name]
        if name in self.load_errors and "failed to load" in self.load_errors[name]:
            raise PluginLoadError(self.load_errors[name])
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known: {listing}")

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``."""
        return self.get(name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


def all_registries() -> dict[str, Registry]:
    """Every registry created so far, by kind."""
    return dict(_ALL)


# The project's registries, one per kind of part. Built-in modules register into them at import
# (``import objssl`` imports them all); plugins arrive through entry points.
BACKBONES: Registry = Registry("backbone")
NECKS: Registry = Registry("neck")
HEADS: Registry = Registry("head")
LOSSES: Registry = Registry("loss")
METHODS: Registry = Registry("method", entry_point_group="objssl.methods")
OBJECTIVES: Registry = Registry("objective", entry_point_group="objssl.objectives")
PROPOSALS: Registry = Registry("proposal source", entry_point_group="objssl.proposals")
EXPORTERS: Registry = Registry("export target")
