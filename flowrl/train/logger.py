"""Metrics to TensorBoard event files and a JSONL file, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    """Writes scalars to `run_dir` (TensorBoard) and `run_dir/metrics.jsonl`."""

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.jsonl = (run_dir / "metrics.jsonl").open("a")

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


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1e-3}} -> {'optim.lr': 1e-3}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
