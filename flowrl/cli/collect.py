"""`flowrl collect`: roll out a built-in policy and save the episodes as a Minari dataset."""

from __future__ import annotations

import argparse

from flowrl.data.collect import DEFAULT_DATASET_ID, DEFAULT_ENV_ID

DEFAULT_POLICIES = {
    "Pendulum-v1": "pendulum-swingup",
    "flowrl/TMazePassive-v0": "tmaze-mixed",
    "flowrl/TMazeActive-v0": "tmaze-mixed",
    "flowrl/MiniGridMemory-v0": "minigrid-mixed",
}


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
    parser.add_argument(
        "--env-kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword arguments of the env, repeatable or comma-separated (e.g. length=50); "
        "the dataset's env spec records them",
    )
    parser.add_argument(
        "--policy",
        help="random, pendulum-swingup, tmaze-oracle, tmaze-mixed, minigrid-oracle or "
        "minigrid-mixed (default: pendulum-swingup on Pendulum-v1, tmaze-mixed on the T-Mazes, "
        "minigrid-mixed on flowrl/MiniGridMemory-v0, else random)",
    )
    parser.add_argument("--episodes", type=int, default=200, help="default: %(default)s")
    parser.add_argument(
        "--dataset-id",
        default=DEFAULT_DATASET_ID,
        help="Minari id (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument(
        "--noise",
        type=float,
        help="pendulum-swingup: each episode takes random torques with a probability drawn "
        "from [0, noise] (default 1); tmaze-mixed: a share noise/2 of the episodes takes the "
        "wrong turn and, independently, noise/2 takes random steps (default 0.6); "
        "minigrid-mixed: the same with the wrong object for the wrong turn (default 0.6)",
    )
    parser.add_argument("--max-episode-steps", type=int, help="override the env's time limit")
    parser.add_argument("--ref-min-score", type=float, help="reference return of a random policy")
    parser.add_argument("--ref-max-score", type=float, help="reference return of an expert")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowrl.data.collect import collect_dataset
    from flowrl.envs.make import parse_env_kwargs

    env_kwargs = parse_env_kwargs(args.env_kwargs)
    policy = args.policy or DEFAULT_POLICIES.get(args.env, "random")
    dataset = collect_dataset(
        args.env,
        policy,
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
