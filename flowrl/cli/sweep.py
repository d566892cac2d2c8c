"""`flowrl sweep`: a grid of settings times seeds, each a `flowrl train` run."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowrl.cli.arguments import add_overrides, add_repeatable
from flowrl.errors import UserError, check_name
from flowrl.experiments.grid import MAX_RUNS

if TYPE_CHECKING:
    from flowrl.experiments.sweep import Sweep


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="run a grid of settings x seeds (resumable; --list for schedulers)",
        description="Run the Cartesian product of --grid values times --seeds, each as a "
        "`flowrl train` run in SWEEP/runs/NAME, with a manifest of every run's settings and "
        "status in SWEEP/manifest.json. Run the same command again to finish an interrupted "
        "sweep: finished runs are skipped, interrupted ones resume from last.pt. A run is "
        "known by its settings and seed: a grid point that repeats a run the sweep holds under "
        "another name is that run.",
    )
    parser.add_argument("--config", help="base YAML file (see configs/); default: the quickstart")
    add_repeatable(
        parser,
        "--grid",
        metavar="KEY=V1,V2",
        help="a setting and its values, e.g. --grid model.attention=flow,softmax (repeatable)",
    )
    parser.add_argument("--seeds", default="0", help="seeds, e.g. 0-4 or 0,1,2 (default: 0)")
    add_overrides(parser, "a setting shared by every run, e.g. --set steps=1000")
    parser.add_argument("--name", help="sweep folder name (default: the config's file name)")
    parser.add_argument(
        "--out-dir", default="sweeps", help="parent of the sweep folder (default: sweeps)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default: 1)")
    parser.add_argument(
        "--threads", type=int, help="torch threads per run (default: CPU cores // jobs)"
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="write the manifest and print one `flowrl train` command per run; run nothing",
    )
    parser.add_argument(
        "--yes", action="store_true", help=f"run or list a grid of more than {MAX_RUNS} runs"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowrl.experiments import grid as grids
    from flowrl.experiments.sweep import run_grid

    if args.jobs <= 0 or (args.threads is not None and args.threads <= 0):
        raise UserError("--jobs and --threads must be positive")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        if key in grids.RESERVED_KEYS:
            raise UserError(f"--set {item}: the sweep sets {key} itself (see --seeds, --name)")
    grid = grids.parse_grid(args.grid)
    seeds = grids.parse_seeds(args.seeds)
    grids.check_size(grid, seeds, yes=args.yes)
    name = args.name or (Path(args.config).stem if args.config else "quickstart")
    directory = (Path(args.out_dir) / check_name(name, "--name")).resolve()
    if args.list:
        list_runs(directory, args.config, args.overrides, grid, seeds)
        return 0
    affinity = hasattr(os, "sched_getaffinity")
    cores = len(os.sched_getaffinity(0)) if affinity else os.cpu_count()
    threads = args.threads or max(1, (cores or 1) // args.jobs)
    sweep, names, failed = run_grid(
        directory,
        args.config,
        args.overrides,
        grid,
        seeds,
        jobs=args.jobs,
        threads=threads,
        progress=not args.no_progress,
    )
    finished = sum(sweep.manifest.runs[run_name]["status"] == "done" for run_name in names)
    print(f"{finished}/{len(names)} runs finished, {len(failed)} failed: {sweep.directory}")
    if failed:
        print(f"failed: {', '.join(failed)} (run the same command again to retry them)")
    print(f"results: flowrl report {sweep.directory}; flowrl plot {sweep.directory} --out FIG.png")
    return 1 if failed else 0


def list_runs(
    directory: Path, config: str | None, overrides: list[str], grid: dict, seeds: list[int]
) -> None:
    """Writes the manifest and prints the `flowrl train` command of each run, as it is made
    (a reader that stops early, `| head`, stops the printing, not the manifest)."""
    from flowrl.experiments.grid import expand
    from flowrl.experiments.sweep import mapped_note, prepare
    from flowrl.train.run_dir import FolderLock

    with FolderLock(directory, "sweep"):
        sweep = prepare(directory, config, overrides, grid)
        printing = True
        for name in sweep.add(expand(grid, seeds)):
            if printing:
                try:
                    print(command_line(sweep, name), flush=True)
                except BrokenPipeError:
                    printing = False
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sweep.manifest.save()
        if (note := mapped_note(sweep)) is not None:
            print(f"note: {note}", file=sys.stderr)


def command_line(sweep: Sweep, name: str) -> str:
    """The `flowrl train` command that trains run `name` of `sweep`, for a scheduler."""
    args = ["train"] if sweep.config is None else ["train", "--config", str(sweep.config)]
    for item in sweep.run_settings(name):
        args += ["--set", item]
    return shlex.join(["flowrl", *args, "--no-progress"])
