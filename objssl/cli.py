"""The ``objssl`` command line: ``objssl list``, ``objssl pretrain``, ``objssl export``, ...

Subcommands live in :mod:`objssl.commands`, one module each, discovered at start-up.
Errors meant for the user (:class:`objssl.errors.UserError`, unknown registry names, plugin load
failures) are printed as one line and exit with status 2; ``OBJSSL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from objssl import __version__
from objssl.errors import UserError
from objssl.registry import PluginLoadError, UnknownNameError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="objssl",
        description="Object-level self-supervised pretraining over any timm backbone.",
    )
    parser.add_argument("--version", action="version", version=f"objssl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import objssl.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers, not commands
            continue
        module = importlib.import_module(f"objssl.commands.{info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (UserError, UnknownNameError, PluginLoadError, FileNotFoundError) as exc:
        if os.environ.get("OBJSSL_DEBUG"):
            raise
        print(f"objssl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"objssl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
