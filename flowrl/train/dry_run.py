"""`flowrl train --dry-run`: every check `run` makes before its first step, nothing written.

The config (`load_config` has checked it), `--resume` against the checkpoint's settings
(`check_resume`) and data (`check_same_dataset`), the dataset loaded and masked, the run's
one preflight (`check_run`: this machine's device, backend and precision, the episode
context, the evaluation env made and compared with the data), the agent set up on the data,
and the run folder (`check_run_dir_free`: where it goes, no other run in it, and whether a
new run, `--resume` or `--overwrite` may take it). Nothing is collected, downloaded,
locked or written.
"""

from __future__ import annotations

from pathlib import Path

from flowrl.agents import DecisionTransformerAgent
from flowrl.agents.checkpoint import load_checkpoint
from flowrl.data import DEFAULT_DATASET_ID, load_dataset
from flowrl.data.fingerprint import check_same_dataset, dataset_fingerprint
from flowrl.data.minari_source import minari_root
from flowrl.errors import UserError
from flowrl.train import preflight
from flowrl.train.config import TrainConfig
from flowrl.train.from_config import prepare_dataset
from flowrl.train.resume_policy import check_resume
from flowrl.train.run_dir import check_run_dir_free
from flowrl.train.threads import training_threads


def dry_run(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    allow_dataset_change: bool = False,
) -> str:
    """Checks what `flowrl.train.run(cfg, ...)` would check before its first step and
    returns one line saying what it would do; a UserError naming the first problem."""
    run_dir = Path(cfg.out_dir) / cfg.name
    check_run_dir_free(run_dir, resume=resume, overwrite=overwrite)
    state = None
    if resume:
        checkpoint = run_dir / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            raise UserError(
                f"--resume: no checkpoint at {checkpoint}: nothing to resume; "
                "start over with --overwrite"
            )
        state = load_checkpoint(checkpoint)
        check_resume(cfg, state["train_config"])
    if cfg.data.dataset == DEFAULT_DATASET_ID and not (minari_root() / DEFAULT_DATASET_ID).exists():
        device = preflight.resolve_device(cfg.device)
        preflight.check_backend(cfg.model, device)
        preflight.check_precision(cfg.precision, device)
        return (
            f"ok as far as the config and this machine ({device}): the demo dataset "
            f"{DEFAULT_DATASET_ID} is not collected yet, the run collects it first; "
            "nothing written"
        )
    dataset = prepare_dataset(load_dataset(cfg.data.dataset, download=False), cfg)
    device, env = preflight.check_run(cfg, dataset)
    agent = DecisionTransformerAgent(cfg.model, return_scale=cfg.data.return_scale)
    agent.setup(dataset, env_id=env.env_id, target_returns=cfg.eval.target_returns)
    if state is not None:
        fingerprints = state.get("dataset_fingerprint"), dataset_fingerprint(dataset)
        check_same_dataset(*fingerprints, cfg.data.dataset, allow=allow_dataset_change)
    start = f"resume {run_dir} at step {state['step']}" if state else f"train {run_dir}"
    threads = f", {training_threads(cfg.threads)} threads" if device.type == "cpu" else ""
    return (
        f"ok: {start}{' (emptied first)' if overwrite else ''} to step {cfg.steps} on "
        f"{dataset.name} ({dataset.num_episodes} episodes), evaluating in {env.env_id}, "
        f"on {device}{threads}; nothing written"
    )
