"""Evaluate a checkpoint: the same as `flowrl eval` (see `--help`)."""

import sys

from flowrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
