"""The ``objssl`` command line: ``objssl list``, ``objssl pretrain``, ``objssl export``, ...

Subcommands live in :mod:`objssl.commands`, one module each, discovered at start-up.
Errors meant for the user (:class:`objssl.errors.UserError`, unknown registry names, plugin load
failures) are printed as one line and exit with status 2; ``OBJSSL_DEBUG=1`` shows the traceback.

Exit status:

====  ==========================================================================
0     done
1     no command given (help printed), or an unexpected error (traceback)
2     an error printed as one line: bad input, bad data, training diverged; or a usage error
3     stopped by SIGTERM/SIGINT after writing a checkpoint; continue with ``--resume``
130   interrupted by a second SIGINT (Ctrl-C) before the checkpoint was written
====  ==========================================================================

Commands that take ``key=value`` overrides (``objssl pretrain``) accept them anywhere on the line.
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

__all__ = ["main", "build_parser", "parse_args", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2


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


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse a command line; ``key=value`` overrides may come before, between or after the options
    (argparse alone takes them only in one run). Unknown ``--flags`` are still usage errors."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and not any(x.startswith("-") for x in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
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
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"objssl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
