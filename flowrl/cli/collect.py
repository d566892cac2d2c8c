"""`flowrl collect`: roll out a built-in policy and save the episodes as a Minari dataset."""

from __future__ import annotations

import argparse

from flowrl.cli.arguments import add_repeatable
from flowrl.data.collect import DEFAULT_DATASET_ID, DEFAULT_ENV_ID
from flowrl.envs.policy_registry import COLLECTION_POLICIES, default_policy


def policy_help() -> str:
    """`--policy`'s help: the registry's policies and which one each env takes by default."""
    defaults = [
        f"{entry.name} on {', '.join(entry.envs)}"
        for entry in COLLECTION_POLICIES.values()
        if entry.default and entry.envs is not None
    ]
    fallback = default_policy("")  # the default on any other env
    names = ", ".join(COLLECTION_POLICIES)
    return f"one of {names} (default: {'; '.join(defaults)}; else {fallback})"


def noise_help() -> str:
    """`--noise`'s help: what the noise does in each policy that has one, and its default."""
    return "; ".join(
        f"{entry.name}: {entry.noise_help} (default {entry.default_noise:g})"
        for entry in COLLECTION_POLICIES.values()
        if entry.noise_help is not None
    )


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="roll out a policy in a Gymnasium env and save a Minari dataset",
        description="Roll out a built-in policy and write a Minari dataset atomically "
        "(under MINARI_DATASETS_PATH, default ~/.minari/datasets).",
    )
    parser.add_argument(
        "--env", default=DEFAULT_ENV_ID, help="Gymnasium env id (default: %(default)s)"
    )
    add_repeatable(
        parser,
        "--env-kwargs",
        help="keyword arguments of the env, repeatable or comma-separated (e.g. length=50); "
        "the dataset's env spec records them",
    )
    parser.add_argument("--policy", help=policy_help())
    parser.add_argument("--episodes", type=int, default=200, help="default: %(default)s")
    parser.add_argument(
        "--dataset-id",
        default=DEFAULT_DATASET_ID,
        help="Minari id (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--noise", type=float, help=noise_help())
    parser.add_argument("--max-episode-steps", type=int, help="override the env's time limit")
    parser.add_argument("--ref-min-score", type=float, help="reference return of a random policy")
    parser.add_argument("--ref-max-score", type=float, help="reference return of an expert")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowrl.data.collect import collect_dataset
    from flowrl.envs.make import parse_env_kwargs

    env_kwargs = parse_env_kwargs(args.env_kwargs)
    dataset = collect_dataset(
        args.env,
        args.policy,
        episodes=args.episodes,
        dataset_id=args.dataset_id,
        seed=args.seed,
        noise=args.noise,
        env_kwargs=env_kwargs,
        max_episode_steps=args.max_episode_steps,
        ref_min_score=args.ref_min_score,
        ref_max_score=args.ref_max_score,
        overwrite=args.overwrite,
    )
    stats = dataset.stats()
    print(
        f"wrote {dataset.name}: {stats['episodes']} episodes, {stats['steps']} steps, return "
        f"min/mean/max {stats['return_min']:.1f} / {stats['return_mean']:.1f} / "
        f"{stats['return_max']:.1f}"
    )
    if stats["normalized_return_mean"] is None:
        print("no reference returns known for this env: pass --ref-min-score/--ref-max-score")
    else:
        print(f"normalised mean score {stats['normalized_return_mean']:.1f}")
    return 0
