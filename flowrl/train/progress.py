"""How far a run folder's saved run got, read from its `checkpoints/last.pt`."""

from __future__ import annotations

from pathlib import Path

from flowrl.agents.checkpoint import load_checkpoint


def saved_step(run_dir: Path) -> tuple[int, bool] | None:
    """(step, finished) of the run's last.pt, None without one; finished: it trained all its
    steps and made its final evaluation (checkpoints before this flag existed: False)."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    return int(state["step"]), bool(state.get("finished", False))


def finished_at(run_dir: Path, steps: int) -> int | None:
    """The step a finished run ended at when it trained at least `steps`; else None."""
    saved = saved_step(run_dir)
    if saved is None or not saved[1] or saved[0] < steps:
        return None
    return saved[0]
