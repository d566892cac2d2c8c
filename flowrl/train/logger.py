"""Metrics to TensorBoard event files and a JSONL file, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from flowrl.files import write_atomic


class MetricsLogger:
    """Writes scalars to `run_dir` (TensorBoard) and `run_dir/metrics.jsonl`.

    `resume_step`: the step of the checkpoint a resumed run continues from. What an earlier
    process logged past it is dropped from the JSONL file and hidden in TensorBoard
    (`purge_step`), so that every step appears once.
    """

    def __init__(
        self, run_dir: Path, *, enabled: bool = True, resume_step: int | None = None
    ) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        jsonl = run_dir / "metrics.jsonl"
        purge_step = None
        if resume_step is not None:
            truncate_metrics(jsonl, resume_step)
            purge_step = resume_step + 1
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.jsonl = jsonl.open("a")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters with final metrics, for TensorBoard's HPARAMS tab."""
        if not self.enabled:
            return
        flat = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()
        }
        self.writer.add_hparams(flat, metrics, run_name=".")

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keeps the rows of a JSONL metrics file up to `last_step` (and no torn last line)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= last_step:
            kept.append(line + "\n")
    write_atomic(path, "".join(kept))
