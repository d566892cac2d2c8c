"""`flowrl eval`: roll out a checkpoint's agent and report (normalised) returns."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flowrl.agents import DecisionTransformerAgent, load_agent
from flowrl.cli.arguments import add_repeatable
from flowrl.errors import UserError
from flowrl.eval import VideoUnavailable, evaluate, record_videos
from flowrl.eval.rollout import EVAL_DEFAULTS, acting_env, check_rollout_settings, target_labels
from flowrl.files import write_atomic

FLAGS = {"target_returns": "--target"}  # evaluate's parameters named otherwise on the CLI


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="evaluate a checkpoint in its environment")
    parser.add_argument("--checkpoint", required=True, help="a .pt file written by flowrl train")
    parser.add_argument(
        "--episodes", type=int, default=EVAL_DEFAULTS.episodes, help="episodes per target return"
    )
    parser.add_argument(
        "--num-envs", type=int, default=EVAL_DEFAULTS.num_envs, help="environments run at once"
    )
    parser.add_argument(
        "--target",
        type=float,
        action="append",
        help="target return (repeatable); default: the checkpoint's targets",
    )
    parser.add_argument(
        "--seed", type=int, default=EVAL_DEFAULTS.seed, help="episode i is reset with seed+i"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=EVAL_DEFAULTS.max_steps,
        help="episode step limit (envs with a fixed horizon, like the T-Mazes, run to it)",
    )
    parser.add_argument("--env", help="environment id; default: the checkpoint's")
    add_repeatable(
        parser,
        "--env-kwargs",
        help="env keyword arguments, repeatable or comma-separated (e.g. length=5000); they "
        "update those the checkpoint's dataset recorded",
    )
    parser.add_argument(
        "--sample-actions",
        action="store_true",
        help="discrete agents: sample each action from the agent's distribution (seeded per "
        "episode by --seed) instead of taking the most likely one",
    )
    parser.add_argument(
        "--attention-eps",
        type=float,
        metavar="EPS",
        help="flow kinds: act with this eps of the attention's normalisers instead of the "
        "checkpoint's (smaller for episodes past about 1/eps tokens; docs/training.md)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--async-envs",
        action="store_true",
        help="step each environment in its own worker process (pays with cores to spare)",
    )
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument(
        "--video", type=Path, metavar="DIR", help="record a few episodes per target to DIR"
    )
    parser.add_argument(
        "--video-episodes", type=int, default=2, help="episodes recorded per target (--video)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowrl.envs.make import parse_env_kwargs

    check_flags(args)  # reliability: before the checkpoint is read and the envs run
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    agent = load_agent(args.checkpoint)
    if args.attention_eps is not None:
        try:
            agent.model.set_attention_eps(args.attention_eps)
        except UserError as err:
            flag = f"--attention-eps {args.attention_eps}"
            raise UserError(f"{flag}: the checkpoint's {err}") from None
    acting_env(agent, args.env, env_kwargs).try_out()  # settings that fail only in a step
    targets = args.target or agent.target_returns
    results = evaluate(
        agent,
        target_returns=targets,
        episodes=args.episodes,
        num_envs=args.num_envs,
        progress=True,
        vectorization="async" if args.async_envs else "sync",
        **rollout_settings(args, env_kwargs),
    )
    summaries = [r.summary() for r in results]
    labels = target_labels([s["target_return"] for s in summaries])
    for s, label in zip(summaries, labels, strict=True):
        line = f"target {label}: return {s['return_mean']:.1f} ± {s['return_std']:.1f}"
        if s["normalized_mean"] is not None:
            line += f", normalised {s['normalized_mean']:.1f} ± {s['normalized_std']:.1f}"
        print(f"{line} ({s['episodes']} episodes)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        env = acting_env(agent, args.env, env_kwargs)
        payload = {
            "checkpoint": str(args.checkpoint),
            "env_id": env.env_id,
            "env_kwargs": dict(env.kwargs),
            "sample_actions": args.sample_actions,
            "attention_eps": agent.model.cfg.attention_eps,
        }
        payload["targets"] = dict(zip(labels, summaries, strict=True))
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    if args.video:
        videos(args, agent, targets, env_kwargs)
    return 0


def rollout_settings(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The flags' settings that the evaluation and its videos both roll out with."""
    return {
        "seed": args.seed,
        "max_steps": args.max_steps,
        "env_id": args.env,
        "env_kwargs": env_kwargs,
        "sample_actions": args.sample_actions,
        "device": args.device,
    }


def check_flags(args: argparse.Namespace) -> None:
    """The evaluation's settings in range; the --json file writable, checked by creating it."""
    from flowrl.nn.device import parse_device

    check_rollout_settings(
        episodes=args.episodes,
        num_envs=args.num_envs,
        max_steps=args.max_steps,
        target_returns=args.target or [],
        setting=lambda key, value: f"{FLAGS.get(key, '--' + key.replace('_', '-'))} {value}",
    )
    parse_device(args.device, "--device")
    if args.attention_eps is not None and not args.attention_eps > 0:
        raise UserError(f"--attention-eps {args.attention_eps}: expected a number > 0")
    if args.video_episodes <= 0:
        raise UserError(f"--video-episodes {args.video_episodes}: expected a positive integer")
    if args.json is None:
        return
    existed = args.json.exists()
    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with args.json.open("a"):
            pass
    except OSError as err:
        raise UserError(f"--json {args.json}: cannot write it: {err.strerror or err}") from None
    if not existed:
        args.json.unlink()  # written for real once the evaluation is done


def videos(
    args: argparse.Namespace,
    agent: DecisionTransformerAgent,
    targets: list[float],
    env_kwargs: dict[str, Any],
) -> None:
    """Records videos, or says on stderr why this machine cannot."""
    try:
        paths = record_videos(
            agent,
            args.video,
            target_returns=targets,
            episodes=min(args.video_episodes, args.episodes),
            **rollout_settings(args, env_kwargs),
        )
    except VideoUnavailable as err:
        print(f"flowrl eval: video skipped: {err}", file=sys.stderr)
        return
    print(f"wrote {len(paths)} videos to {args.video}")
