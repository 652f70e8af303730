"""Subcommands of the ``objssl`` CLI.

Every module in this package is a subcommand: it defines ``add_parser(subparsers)`` which adds its
parser and calls ``parser.set_defaults(func=run)`` with ``run(args) -> int``. ``objssl.cli``
discovers them, so adding a command is adding a module.
"""
