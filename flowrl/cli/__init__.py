"""The `flowrl` command. Each subcommand lives in its own module with `add_parser` and `run`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flowrl.errors import exit_status, show_warnings_in_one_line

# Subcommand modules, imported lazily so `flowrl --help` stays fast.
SUBCOMMANDS: dict[str, str] = {
    "collect": "flowrl.cli.collect",
    "datasets": "flowrl.cli.datasets",
    "train": "flowrl.cli.train",
    "eval": "flowrl.cli.eval",
    "sweep": "flowrl.cli.sweep",
    "report": "flowrl.cli.report",
    "plot": "flowrl.cli.plot",
    "bench": "flowrl.cli.bench",
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="flowrl", description="Offline RL with Decision Transformers on Flow-Attention."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    prog = f"flowrl {args.command}"
    show_warnings_in_one_line(prog)
    return exit_status(lambda: args.run(args), prog)
