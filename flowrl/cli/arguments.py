"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse


def add_repeatable(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    help: str,
    metavar: str = "KEY=VALUE",
    dest: str | None = None,
) -> None:
    """`flag`, repeatable: its values collected in a list, empty when it is not given."""
    names = {} if dest is None else {"dest": dest}
    parser.add_argument(flag, action="append", default=[], metavar=metavar, help=help, **names)


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE` (repeatable), the config overrides, in `args.overrides`."""
    add_repeatable(parser, "--set", dest="overrides", help=help)
