"""`flowrl train`: train a Decision Transformer from a config file and overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import DEFAULT_DATASET_ID, load_or_collect
from flowrl.data.masked import mask_dataset
from flowrl.eval.rollout import target_labels
from flowrl.train import distributed, fit, load_config
from flowrl.train.progress import finished_at
from flowrl.train.trainer import resolve_device


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="train an agent (no arguments: the quickstart on scripted Pendulum)",
        description="Train a Decision Transformer. With no --config, the quickstart: a small "
        "flow agent on a scripted Pendulum-v1 dataset, on the CPU in a few minutes.",
    )
    parser.add_argument("--config", help="YAML file (see configs/); defaults to the quickstart")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set optim.lr=3e-4 --set model.attention=softmax",
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(cfg.out_dir) / cfg.name
    resuming = args.resume and not args.overwrite  # both: the trainer refuses them
    if resuming and (step := finished_at(run_dir, cfg)) is not None:
        print(f"run {run_dir} finished at step {step}: nothing to do, nothing written")
        return 0
    progress = not args.no_progress
    with distributed.process_group(resolve_device(cfg.device)):  # under torchrun: DDP
        with distributed.main_first():  # a download or collection happens once, on rank 0
            ds = load_or_collect(
                cfg.data.dataset,
                download=cfg.data.download,
                progress=progress and distributed.is_main(),
            )
        if cfg.data.observation_mask != "none":
            ds = mask_dataset(ds, cfg.data.observation_mask)
        agent = DecisionTransformerAgent(cfg.model, return_scale=cfg.data.return_scale)
        summary = fit(
            agent,
            ds,
            config=cfg,
            resume=args.resume,
            overwrite=args.overwrite,
            allow_dataset_change=args.allow_dataset_change,
            progress=progress,
        )
        is_main = distributed.is_main()
    if not is_main:
        return 0
    run_dir = Path(summary["run_dir"])
    print(f"\ndataset {ds.name}: {ds.num_episodes} episodes, env {ds.env_id}")
    average, best = float(ds.returns.mean()), float(ds.returns.max())
    labels = target_labels([result["target_return"] for result in summary["results"]])
    for result, label in zip(summary["results"], labels, strict=True):
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
    if summary["best_score"] > -float("inf"):
        print(f"best evaluation during training: {summary['best_score']:.1f} (checkpoints/best.pt)")
    print(f"checkpoints: {run_dir / 'checkpoints'}")
    print(f"TensorBoard: tensorboard --logdir {run_dir.parent}")
    if cfg.data.dataset == DEFAULT_DATASET_ID:
        print(f"evaluate again: flowrl eval --checkpoint {run_dir / 'checkpoints/last.pt'}")
    return 0
