"""What every benchmark script shares: the `--smoke` / `--quick` profiles, `--out` and
`--update-committed`, and writing its result files.

A script declares its sizes per profile (`full`, and `quick` and `smoke` where it has them)
with `None` defaults on its own options; `resolve_profile` fills in what the command line
left out. Results go to `--out` (default benchmarks/out/, git-ignored); the committed copies
under benchmarks/results/ and docs/ change only with `--update-committed`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"


def add_common_args(
    parser: argparse.ArgumentParser,
    committed: Sequence[Path],
    *,
    quick: bool = True,
    out: Path = DEFAULT_OUT,
) -> None:
    """--smoke, --quick (where the script has that profile), --out (default `out`) and,
    where the script has `committed` files in the repository, --update-committed."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, every case, seconds")
    if quick:
        parser.add_argument("--quick", action="store_true", help="smaller sizes, short budgets")
    parser.add_argument("--out", type=Path, default=out, help=f"folder for the results ({out})")
    if committed:
        names = ", ".join(str(p.relative_to(ROOT)) for p in committed)
        parser.add_argument(
            "--update-committed", action="store_true", help=f"also overwrite {names}"
        )


def resolve_profile(
    parser: argparse.ArgumentParser, args: argparse.Namespace, profiles: Mapping[str, dict]
) -> argparse.Namespace:
    """Sets `args.profile` (smoke, quick or full) and every option still None from it."""
    quick = getattr(args, "quick", False)
    if args.smoke and quick:
        parser.error("--smoke and --quick are two profiles: give one")
    if args.smoke and getattr(args, "update_committed", False):
        parser.error("--update-committed with --smoke would commit toy numbers")
    args.profile = "smoke" if args.smoke else "quick" if quick else "full"
    for key, value in profiles[args.profile].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def write_json(args: argparse.Namespace, name: str, payload: dict) -> Path:
    """Writes `payload` as `--out`/`name`; returns the path."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def publish(
    args: argparse.Namespace, written: Sequence[Path], committed: Mapping[str, Path]
) -> list[Path]:
    """With --update-committed, copies each written file whose name `committed` maps to a
    repository path onto that path. Prints and returns every file written."""
    paths = list(written)
    if getattr(args, "update_committed", False):
        for path in written:
            target = committed.get(path.name)
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                paths.append(target)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


def trained_length(sweep: Path) -> int:
    """The length (T-Maze L, MiniGrid size S) of a `flowrl bench memory` sweep folder named
    like `passive-L30-flow-episode` or `minigrid-L13-flow-relu-episode`."""
    found = re.search(r"-L(\d+)-", sweep.name)
    if found is None:
        raise SystemExit(f"{sweep}: not a memory sweep folder (TASK-L<length>-VARIANT)")
    return int(found.group(1))
