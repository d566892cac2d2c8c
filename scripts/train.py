"""Train an agent: the same as `flowrl train` (see `--help`)."""

import sys

from flowrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
