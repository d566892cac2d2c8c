"""`flowrl datasets`: list local datasets, show one's statistics."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="list local datasets or show one", description="Local offline datasets."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="Minari datasets (MINARI_DATASETS_PATH) and D4RL files (D4RL_DATASET_DIR)"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON list")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="statistics of one dataset")
    show.add_argument("spec", metavar="SPEC", help="Minari id, D4RL name or path to an HDF5 file")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.add_argument("--download", action="store_true", help="fetch it if it is not local")
    show.set_defaults(run=run_show)


def run_list(args: argparse.Namespace) -> int:
    from flowrl.data.d4rl_source import d4rl_dir, list_d4rl
    from flowrl.data.minari_source import list_minari, minari_root

    rows = [
        {"name": dataset_id, "source": "minari", **entry}
        for dataset_id, entry in list_minari().items()
    ]
    rows += [{"source": "d4rl", **entry} for entry in list_d4rl()]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no local datasets in {minari_root()} (Minari) or {d4rl_dir()} (D4RL)")
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'name':<{width}}  source  {'episodes':>8}  {'steps':>9}")
    for row in rows:
        if row["damaged"] is None:
            counts = f"{row['episodes']:>8}  {row['steps']:>9}"
        else:  # one line: what is wrong
            counts = f"damaged: {row['damaged']}"
        print(f"{row['name']:<{width}}  {row['source']:<6}  {counts}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from flowrl.data.loader import load_dataset
    from flowrl.data.minari_source import check_minari_files, is_minari_id, minari_root

    for part in args.spec.split("+"):  # a local Minari set's files against its metadata first
        if is_minari_id(part) and (minari_root() / part / "data").is_dir():
            check_minari_files(minari_root() / part / "data")
    stats = load_dataset(args.spec, download=args.download).stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    score = stats["normalized_return_mean"]
    refs = (
        "none"
        if score is None
        else f"{stats['ref_min_score']:g} / {stats['ref_max_score']:g} "
        f"(normalised mean return {score:.1f})"
    )
    lines = {
        "dataset": stats["name"],
        "env": (stats["env_id"] or "unknown")
        + (f" {json.dumps(stats['env_kwargs'])}" if stats["env_kwargs"] else ""),
        "actions": "continuous"
        if stats["discrete_actions"] is None
        else f"Discrete({stats['discrete_actions']}), one-hot in batches",
        "episodes": stats["episodes"],
        "steps": stats["steps"],
        "obs / act dim": f"{stats['obs_dim']} / {stats['act_dim']}",
        "episode length": f"{stats['length_min']} .. {stats['length_max']}",
        "terminated": f"{stats['terminated_episodes']} episodes",
        "return": f"min {stats['return_min']:.2f}  mean {stats['return_mean']:.2f}  "
        f"max {stats['return_max']:.2f}",
        "reference": refs,
    }
    for key, value in lines.items():
        print(f"{key:<15} {value}")
    return 0
