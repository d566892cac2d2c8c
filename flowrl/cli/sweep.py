"""`flowrl sweep`: a grid of settings times seeds, each a `flowrl train` run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flowrl.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="run a grid of settings x seeds (resumable; --list for schedulers)",
        description="Run the Cartesian product of --grid values times --seeds, each as a "
        "`flowrl train` run in SWEEP/runs/NAME, with a manifest of every run's settings and "
        "status in SWEEP/manifest.json. Run the same command again to finish an interrupted "
        "sweep: finished runs are skipped, interrupted ones resume from last.pt.",
    )
    parser.add_argument("--config", help="base YAML file (see configs/); default: the quickstart")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a setting and its values, e.g. --grid model.attention=flow,softmax (repeatable)",
    )
    parser.add_argument("--seeds", default="0", help="seeds, e.g. 0-4 or 0,1,2 (default: 0)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting shared by every run, e.g. --set steps=1000",
    )
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowrl.experiments.grid import RESERVED_KEYS, expand, parse_grid, parse_seeds
    from flowrl.experiments.sweep import ensure_datasets, exclusive, execute, prepare

    if args.jobs <= 0 or (args.threads is not None and args.threads <= 0):
        raise UserError("--jobs and --threads must be positive")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        if key in RESERVED_KEYS:
            raise UserError(f"--set {item}: the sweep sets {key} itself (see --seeds, --name)")
    grid = parse_grid(args.grid)
    runs = expand(grid, parse_seeds(args.seeds))
    name = args.name or (Path(args.config).stem if args.config else "quickstart")
    directory = Path(args.out_dir) / name
    sweep = prepare(directory, args.config, args.overrides, grid, runs)
    if args.list:
        for spec in runs:
            print(sweep.command_line(spec))
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads or max(1, (cores or 1) // args.jobs)
    with exclusive(sweep.directory):
        if not all(sweep.is_finished(spec) for spec in runs):
            ensure_datasets(sweep)
        failed = execute(sweep, jobs=args.jobs, threads=threads, progress=not args.no_progress)
    finished = sum(sweep.is_finished(spec) for spec in runs)
    print(f"{finished}/{len(runs)} runs finished, {len(failed)} failed: {sweep.directory}")
    if failed:
        print(f"failed: {', '.join(failed)} (run the same command again to retry them)")
    print(f"results: flowrl report {sweep.directory}; flowrl plot {sweep.directory} --out FIG.png")
    return 1 if failed else 0
