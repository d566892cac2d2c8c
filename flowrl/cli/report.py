"""`flowrl report`: a results table over seeds (mean, std, median, IQM with bootstrap CIs)."""

from __future__ import annotations

import argparse

from flowrl.errors import UserError


def split_keys(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


def add_common(parser: argparse.ArgumentParser) -> None:
    """Arguments `flowrl report` and `flowrl plot` share."""
    parser.add_argument("paths", nargs="+", metavar="DIR", help="sweep, run or runs folders")
    parser.add_argument(
        "--by",
        help="config keys to group runs by, comma-separated, e.g. model.attention,data.dataset "
        "(default: the keys whose values differ between runs, seed aside)",
    )
    parser.add_argument(
        "--reps", type=int, default=50_000, help="bootstrap resamples (default: 50000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def check_common(args: argparse.Namespace) -> None:
    """The shared arguments in range, before any run is read."""
    if args.reps <= 0:
        raise UserError(f"--reps {args.reps}: expected a positive number")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: expected an integer >= 0")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="results table: per group mean, std, median, IQM with 95%% bootstrap CIs",
        description="Summarise each group of runs (runs that differ only in seed) by the "
        "final value of a metric: number of runs, mean, standard deviation (ddof=1), median and "
        "the interquartile mean (IQM) with a 95% stratified-bootstrap confidence interval "
        "(rliable's definitions; the tasks, data.dataset, are the strata).",
    )
    add_common(parser)
    parser.add_argument(
        "--metric",
        action="append",
        help="metric key in metrics.jsonl (repeatable; default: "
        "eval/normalized_mean_last and eval/normalized_mean_best)",
    )
    parser.add_argument(
        "--improvement",
        action="store_true",
        help="also the probability of improvement P(X > Y) for every pair of groups",
    )
    formats = parser.add_mutually_exclusive_group()
    for fmt in ("markdown", "csv", "json"):
        formats.add_argument(
            f"--{fmt}", dest="format", action="store_const", const=fmt, help=f"print {fmt}"
        )
    parser.set_defaults(run=run, format="table")


def run(args: argparse.Namespace) -> int:
    from flowrl.experiments import report
    from flowrl.experiments.runs import find_runs

    check_common(args)
    runs = find_runs(args.paths)
    groups = report.group_runs(runs, split_keys(args.by))
    keys = list(groups[0].label)
    metrics = args.metric or list(report.DEFAULT_METRICS)
    rows = report.summarise(groups, metrics, reps=args.reps, seed=args.seed)
    items = []
    if args.improvement:
        for metric in metrics:
            items += report.improvements(groups, metric, reps=args.reps, seed=args.seed)
    if args.format == "json":
        print(report.to_json(rows, keys, items))
    elif args.format == "csv":
        print(report.to_csv(rows, keys))
    else:
        print(report.table(rows, keys, markdown=args.format == "markdown"))
        if items:
            print("\n" + report.improvement_lines(items))
    return 0
