"""``objssl list [methods|objectives|backbones|proposals|heads|losses|necks|exporters] [PATTERN]``."""

from __future__ import annotations

import argparse
import fnmatch

KINDS = ("methods", "objectives", "backbones", "proposals", "heads", "losses", "necks", "exporters")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list what is registered (methods, backbones, proposal sources, ...)")
    p.add_argument("kind", nargs="?", choices=KINDS, help="what to list (default: everything but backbones)")
    p.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. 'resnet*' for backbones")
    p.set_defaults(func=run)


def _describe(reg, name: str) -> str:
    """``describe()`` of a registered class (objective terms say what they need); plugins are loaded for it."""
    try:
        describe = getattr(reg.get(name), "describe", None)
    except ImportError:
        return ""
    return f"  {describe()}" if callable(describe) else ""


def _print_registry(title: str, reg, pattern: str | None, details: bool = False) -> None:
    names = [n for n in reg.names() if pattern is None or fnmatch.fnmatch(n, pattern)]
    print(f"{title}:")
    for n in names:
        origin = reg.plugin_origin(n) if reg.entry_point_group else None
        extra = _describe(reg, n) if details else ""
        print(f"  {n:<16}{extra}" + (f"  (plugin: {origin})" if origin else ""))
    for n, msg in sorted(reg.load_errors.items()):
        print(f"  {n}  [unavailable] {msg}")
    if not names and not reg.load_errors:
        print("  (none)")


def run(args: argparse.Namespace) -> int:
    import objssl  # noqa: F401 - registers the built-in parts
    from objssl import registry as r

    kind = args.kind
    if kind == "backbones":
        import timm

        custom = r.BACKBONES.names()
        if custom:
            _print_registry("objssl backbones", r.BACKBONES, args.pattern)
        names = timm.list_models(args.pattern or "*")
        print(f"timm models ({len(names)}; any of them works as --backbone):")
        for n in names:
            print(f"  {n}")
        return 0
    if kind == "proposals":
        from objssl.proposals import describe_sources

        print("proposal sources:")
        for name, origin, status in describe_sources():
            if args.pattern and not fnmatch.fnmatch(name, args.pattern):
                continue
            print(f"  {name:<20} {origin:<40} {status}")
        return 0
    tables = {
        "methods": r.METHODS, "objectives": r.OBJECTIVES, "heads": r.HEADS, "losses": r.LOSSES, "necks": r.NECKS,
        "exporters": r.EXPORTERS, "proposals": r.PROPOSALS,
    }
    for k in ([kind] if kind else [k for k in KINDS if k != "backbones"]):
        if k == "proposals" and kind is None:
            _print_registry(k, r.PROPOSALS, args.pattern)
            continue
        _print_registry(k, tables[k], args.pattern, details=k == "objectives")
    if kind is None:
        print("backbones:\n  any timm model name (`objssl list backbones PATTERN`)")
    return 0
