"""`flowrl train`: train a Decision Transformer from a config file and overrides."""

from __future__ import annotations

import argparse

from flowrl import train
from flowrl.cli.arguments import add_overrides
from flowrl.data import DEFAULT_DATASET_ID
from flowrl.eval.rollout import target_labels
from flowrl.train import load_config


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="train an agent (no arguments: the quickstart on scripted Pendulum)",
        description="Train a Decision Transformer. With no --config, the quickstart: a small "
        "flow agent on a scripted Pendulum-v1 dataset, on the CPU in a few minutes.",
    )
    parser.add_argument("--config", help="YAML file (see configs/); defaults to the quickstart")
    add_overrides(
        parser, "override a setting, e.g. --set optim.lr=3e-4 --set model.attention=softmax"
    )
    parser.add_argument("--resume", action="store_true", help="continue out_dir/name from last.pt")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete what out_dir/name holds, then train"
    )
    parser.add_argument(
        "--allow-dataset-change",
        action="store_true",
        help="--resume even if the dataset differs from the checkpoint's",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything a run checks before its first step (config, data, env, device, "
        "run folder), write nothing, and exit",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.dry_run:
        from flowrl.train.dry_run import dry_run

        flags = {"resume": args.resume, "overwrite": args.overwrite}
        print(dry_run(cfg, **flags, allow_dataset_change=args.allow_dataset_change))
        return 0
    outcome = train.run(
        cfg,
        resume=args.resume,
        overwrite=args.overwrite,
        allow_dataset_change=args.allow_dataset_change,
        progress=not args.no_progress,
    )
    if outcome is None:  # not rank 0 under torchrun
        return 0
    run_dir, ds = outcome.run_dir, outcome.dataset
    if (step := outcome.finished_before) is not None:
        print(f"run {run_dir} finished at step {step}: nothing to do, nothing written")
        return 0
    print(f"\ndataset {ds.name}: {ds.num_episodes} episodes, env {ds.env_id}")
    average, best = float(ds.returns.mean()), float(ds.returns.max())
    labels = target_labels([result["target_return"] for result in outcome.results])
    for result, label in zip(outcome.results, labels, strict=True):
        line = f"target {label}: return {result['return_mean']:.1f}"
        line += f" ± {result['return_std']:.1f} over {result['episodes']} episodes"
        if result["normalized_mean"] is not None:
            line += f", normalised score {result['normalized_mean']:.1f}"
        print(line)
    avg_score, best_score = ds.normalized_score(average), ds.normalized_score(best)
    if avg_score is not None and best_score is not None:
        print(f"dataset average: return {average:.1f}, normalised score {float(avg_score):.1f}")
        print(f"dataset best episode: return {best:.1f}, normalised score {float(best_score):.1f}")
    else:
        print(f"dataset average return {average:.1f}, best episode {best:.1f}")
    if outcome.best_score > -float("inf"):
        print(f"best evaluation during training: {outcome.best_score:.1f} (checkpoints/best.pt)")
    print(f"checkpoints: {run_dir / 'checkpoints'}")
    print(f"TensorBoard: tensorboard --logdir {run_dir.parent}")
    if cfg.data.dataset == DEFAULT_DATASET_ID:
        print(f"evaluate again: flowrl eval --checkpoint {run_dir / 'checkpoints/last.pt'}")
    return 0
