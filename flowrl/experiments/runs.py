"""Read finished or running runs: run folders with config.yaml and metrics.jsonl.

A run whose metrics.jsonl is damaged, or that has no config.yaml, is left out with a note
naming it (and the line); a run with TensorBoard events but no metrics.jsonl is read from
its events; of two folders that hold the same run (the same settings and seed, see
`identity`), one is counted.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flowrl.errors import UserError
from flowrl.experiments.identity import identity
from flowrl.train.config import dotted_settings


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: {'model.attention': 'flow', ...}
    metrics: dict[str, dict[int, float]]  # key -> {step: value}

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric, by step."""
        points = sorted(self.metrics.get(key, {}).items())
        return np.array([s for s, _ in points], int), np.array([v for _, v in points], float)

    @property
    def last_step(self) -> int:
        """The last step the run logged anything at (0 when none)."""
        return max((max(points) for points in self.metrics.values() if points), default=0)

    def final(self, key: str) -> float | None:
        """The metric at its last logged step (None when never logged)."""
        points = self.metrics.get(key)
        return points[max(points)] if points else None


def read_metrics(path: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl -> {key: {step: value}}; a resumed run's later lines replace earlier ones.

    A torn last line (a run killed while writing) is ignored; a damaged line elsewhere is a
    UserError naming the file and line.
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


def read_events(path: Path) -> dict[str, dict[int, float]]:
    """The scalars of the TensorBoard event files in a folder: {tag: {step: value}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {
        tag: {event.step: float(event.value) for event in events.Scalars(tag)}
        for tag in events.Tags()["scalars"]
    }


def read_run(path: Path) -> Run:
    """A run folder: its config.yaml (a run is grouped and known by its settings: a
    UserError without one) and metrics.jsonl, or where there is none, its TensorBoard event
    files."""
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise UserError("no config.yaml in it (its settings group it and tell runs apart)")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{config_path}: not readable YAML ({err})") from None
    if not isinstance(config, (dict, type(None))):
        raise UserError(f"{config_path}: expected a mapping of settings")
    jsonl = path / "metrics.jsonl"
    metrics = read_metrics(jsonl) if jsonl.is_file() else read_events(path)
    return Run(path, dotted_settings(config or {}), metrics)


def _run_folders(path: Path) -> list[Path]:
    """Folders at or under `path` with metrics.jsonl or TensorBoard events (or both)."""
    patterns = ("metrics.jsonl", "events.out.tfevents.*")
    if any(any(path.glob(pattern)) for pattern in patterns):
        return [path]
    return sorted({file.parent for pattern in patterns for file in path.rglob(pattern)})


def note(text: str) -> None:
    """A line on stderr about a run the results leave out."""
    print(f"note: {text}", file=sys.stderr)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Runs at or under each path (a run folder, a sweep folder, a folder of runs), each
    once: a damaged run is left out, and of folders that hold the same run, the one that got
    furthest is kept, with a note for each."""
    runs, seen = [], set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise UserError(f"{path} does not exist")
        folders = _run_folders(path)
        if not folders:
            raise UserError(
                f"no runs under {path}: expected run folders with metrics.jsonl or "
                "TensorBoard event files"
            )
        for folder in folders:
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            try:
                runs.append(read_run(folder))
            except UserError as err:
                note(f"run {folder} left out: {err}")
    if not runs:
        raise UserError(f"no readable runs under {', '.join(map(str, paths))}")
    return distinct(runs)


def distinct(runs: list[Run]) -> list[Run]:
    """The runs with one folder per identity: the one that logged the furthest step (the
    first given, on a tie); a note names both folders of each duplicate."""
    kept: dict[str, Run] = {}
    for run in runs:
        if not run.config:  # no config.yaml: nothing to compare
            kept[str(run.path)] = run
            continue
        key = identity(run.config)
        other = kept.setdefault(key, run)
        if other is run:
            continue
        keep, drop = (run, other) if run.last_step > other.last_step else (other, run)
        kept[key] = keep
        note(
            f"runs {keep.path} and {drop.path} hold the same settings and seed: "
            f"counting {keep.path} once"
        )
    chosen = {id(run) for run in kept.values()}
    return [run for run in runs if id(run) in chosen]
