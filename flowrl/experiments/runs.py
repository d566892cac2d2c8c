"""Read finished or running runs: run folders with config.yaml and metrics.jsonl."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flowrl.errors import UserError


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: {'model.attention': 'flow', ...}
    metrics: dict[str, dict[int, float]]  # key -> {step: value}

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric, by step."""
        points = sorted(self.metrics.get(key, {}).items())
        return np.array([s for s, _ in points], int), np.array([v for _, v in points], float)

    def final(self, key: str) -> float | None:
        """The metric at its last logged step (None when never logged)."""
        points = self.metrics.get(key)
        return points[max(points)] if points else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'attention': 'flow'}} -> {'model.attention': 'flow'}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_metrics(path: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl -> {key: {step: value}}; a resumed run's later lines replace earlier ones.

    A torn last line (a run killed while writing) is ignored.
    """
    metrics: dict[str, dict[int, float]] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row.pop("step"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):
                break
            raise UserError(f"{path}:{number}: expected a JSON object with a step") from None
        for key, value in row.items():
            if isinstance(value, (int, float)):
                metrics.setdefault(key, {})[step] = float(value)
    return metrics


def read_run(path: Path) -> Run:
    config_path = path / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    return Run(path, flatten(config or {}), read_metrics(path / "metrics.jsonl"))


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Runs at or under each path (a run folder, a sweep folder, a folder of runs)."""
    runs, seen = [], set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise UserError(f"{path} does not exist")
        found = [path / "metrics.jsonl"] if (path / "metrics.jsonl").is_file() else []
        found = found or sorted(path.rglob("metrics.jsonl"))
        if not found:
            raise UserError(f"no runs under {path}: expected run folders with metrics.jsonl")
        for file in found:
            if file.parent.resolve() not in seen:
                seen.add(file.parent.resolve())
                runs.append(read_run(file.parent))
    return runs
