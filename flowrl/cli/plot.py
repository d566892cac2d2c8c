"""`flowrl plot`: learning curves and final scores of runs, grouped like `flowrl report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowrl.cli.report import add_common, check_common, split_keys


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="plot learning curves and final scores per group (PNG, SVG or PDF)",
        description="Learning curves (metric against step, mean over seeds with a shaded "
        "band), a bar chart of each group's final IQM with its 95% stratified-bootstrap CI, "
        "and a performance profile when the runs span several datasets.",
    )
    add_common(parser)
    parser.add_argument("--out", type=Path, required=True, help="FIG.png, FIG.svg or FIG.pdf")
    parser.add_argument(
        "--metric",
        default="eval/normalized_mean_last",
        help="metric key in metrics.jsonl (default: eval/normalized_mean_last)",
    )
    parser.add_argument(
        "--band",
        choices=("std", "ci", "none"),
        default="std",
        help="shaded band of the curves: ± 1 std over seeds, 95%% bootstrap CI of the mean, "
        "or none (default: std)",
    )
    parser.set_defaults(run=run, reps=2000)


def run(args: argparse.Namespace) -> int:
    from flowrl.experiments.plot import check_out, plot_runs
    from flowrl.experiments.report import group_runs
    from flowrl.experiments.runs import find_runs

    check_out(args.out)
    check_common(args)
    groups = group_runs(find_runs(args.paths), split_keys(args.by))
    plot_runs(groups, args.metric, args.out, band=args.band, reps=args.reps, seed=args.seed)
    print(f"wrote {args.out}")
    return 0
