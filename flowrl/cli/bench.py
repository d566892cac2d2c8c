"""`flowrl bench memory`: the T-Maze memory benchmark in one command
(flowrl.studies.memory; docs/long-context.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Sizes of a full grid and of --smoke (one short corridor, one variant, one seed, a few
# steps: the whole pipeline in well under a minute); the command line overrides either.
PROFILES = {
    "full": {"seeds": "0-2", "steps": 3000, "episodes": 100,
             "dataset_episodes": 1000, "generalise": [2, 5, 10], "reps": 20_000},
    "smoke": {"seeds": "0", "steps": 10,
              "episodes": 4, "dataset_episodes": 16, "generalise": [2], "reps": 200},
}  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    from flowrl.studies.memory import TASKS, VARIANTS

    parser = subparsers.add_parser(name, help="benchmarks that are part of the library")
    bench = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    memory = bench.add_parser(
        "memory",
        help="T-Maze: collect, train each variant over seeds, evaluate at longer corridors",
        description="The long-context benchmark: for each corridor length, collect a T-Maze "
        "dataset, train every variant over the seeds (one sweep each), evaluate the "
        "recurrent agents at corridors --generalise times longer, and write a table, a JSON "
        "file and a figure of success rate against corridor length.",
    )
    memory.add_argument("--task", choices=list(TASKS), default="passive")
    memory.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        help="T-Maze corridor lengths (10 30 100) or MiniGrid sizes (13 31 61)",
    )
    memory.add_argument(
        "--variants", nargs="+", help=f"of {', '.join(VARIANTS)} (default: the task's)"
    )
    memory.add_argument("--seeds", help="seeds per variant, e.g. 0-2 (the default)")
    memory.add_argument("--steps", type=int, help="training steps per run (3000)")
    memory.add_argument("--episodes", type=int, help="evaluation episodes (100)")
    memory.add_argument("--dataset-episodes", type=int, help="episodes collected per L (1000)")
    memory.add_argument(
        "--generalise", type=int, nargs="*", help="corridor multiples to evaluate at (2 5 10)"
    )
    memory.add_argument(
        "--acting-eps",
        type=float,
        metavar="EPS",
        help="the --generalise evaluations act with this eps of flow attention's normalisers "
        "instead of the one the agents trained with (flowrl eval --attention-eps)",
    )
    memory.add_argument(
        "--softmax-episode-max",
        type=int,
        default=300,
        help="longest L trained with softmax over the whole episode",
    )
    memory.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="sweeps at once")
    memory.add_argument("--config", type=Path, help="default: configs/memory/<task's>.yaml")
    memory.add_argument("--out", type=Path, default=Path("sweeps/memory"), help="run folders")
    memory.add_argument("--json", type=Path, help="results file (default: OUT/memory.json)")
    memory.add_argument("--figure", type=Path, help="figure (default: OUT/tmaze.png)")
    memory.add_argument("--reps", type=int, help="bootstrap resamples (20000)")
    memory.add_argument("--report-only", action="store_true", help="train nothing: tabulate")
    memory.add_argument("--smoke", action="store_true", help="tiny grid: the pipeline runs")
    memory.set_defaults(run=run_memory)


def run_memory(args: argparse.Namespace) -> int:
    from flowrl.errors import UserError, check_choice, renamed
    from flowrl.experiments.hostinfo import machine
    from flowrl.studies import memory

    for key, value in PROFILES["smoke" if args.smoke else "full"].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    task = memory.TASKS[args.task]
    args.lengths = args.lengths or ([task.smoke_length] if args.smoke else list(task.lengths))
    variants = list(task.variants or memory.VARIANTS)
    args.variants = [renamed(v, memory.RENAMED_VARIANTS, "variant") for v in args.variants or ()]
    for variant in args.variants:
        check_choice("--variants", variant, tuple(memory.VARIANTS))
    args.variants = args.variants or (variants[:1] if args.smoke else variants)
    args.config = args.config or Path(task.config)
    if not args.config.is_file():
        raise UserError(f"--config {args.config}: no such file (run from the repository root)")
    args.json = args.json or args.out / "memory.json"
    args.figure = args.figure or args.out / f"{args.task}.png"
    memory.check_args(args)  # before anything is collected or trained
    args.machine = {**machine(torch_threads=1), "profile": "smoke" if args.smoke else "full"}
    results = memory.run(args)
    return 0 if results["trained"] else 1
