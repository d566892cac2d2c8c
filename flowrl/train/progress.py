"""How far a run folder's saved run got, read from its `checkpoints/last.pt`."""

from __future__ import annotations

from pathlib import Path

from flowrl.agents.checkpoint import load_checkpoint
from flowrl.train.config import TrainConfig
from flowrl.train.resume_policy import check_resume


def saved_step(run_dir: Path) -> tuple[int, bool] | None:
    """(step, finished) of the run's last.pt, None without one; finished: it trained all its
    steps and made its final evaluation (checkpoints before this flag existed: False)."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    return int(state["step"]), bool(state.get("finished", False))


def finished_at(run_dir: Path, cfg: TrainConfig) -> int | None:
    """The step a finished run ended at when it trained at least `cfg.steps`; else None.
    A UserError if `cfg` changes what --resume may not change (`check_resume`), finished or not."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    check_resume(cfg, state["train_config"])
    step = int(state["step"])
    return step if state.get("finished", False) and step >= cfg.steps else None
