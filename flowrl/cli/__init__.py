"""The `flowrl` command. Each subcommand lives in its own module with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from flowrl.errors import DataWarning, Interrupted, RenamedWarning, UserError

PYTHON_SHOWWARNING = warnings.showwarning  # kept for warnings that are not flowrl's

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
    show_warnings_in_one_line(f"flowrl {args.command}")
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        print(f"flowrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # training saved itself after SIGINT/SIGTERM
        print(f"flowrl {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"flowrl {args.command}: interrupted", file=sys.stderr)
        return 130


def show_warnings_in_one_line(prog: str) -> None:
    """flowrl's own warnings print as `prog: warning: message`, without a source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DataWarning, RenamedWarning)):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)

    warnings.showwarning = show
