"""Synthetic run folders (config.yaml and metrics.jsonl as `flowrl train` writes them) and a
helper that runs the flowrl CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]
ATTENTIONS = ("flow", "softmax")
DATASETS = ("tests/a-v0", "tests/b-v0")
SEEDS = range(5)
EVAL_STEPS = (100, 200, 300, 400, 500)


def flowrl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flowrl", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=scaled(600),
    )


def write_run(run_dir: Path, config: dict, rows: list[dict], *, torn: bool = False) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps(row) for row in rows]
    if torn:  # a run killed while writing its last line
        lines.append('{"step": 5')
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + ("" if torn else "\n"))


@pytest.fixture
def synthetic_runs(tmp_path) -> tuple[Path, dict]:
    """2 attentions x 2 datasets x 5 seeds of eval curves; returns the folder and
    {(attention, dataset): [final last score per seed]}, {...: [final best score]}."""
    rng = np.random.default_rng(7)
    finals: dict[tuple[str, str, str], list[float]] = {}
    for attention in ATTENTIONS:
        for d, dataset in enumerate(DATASETS):
            for seed in SEEDS:
                level = 40.0 + 15 * (attention == "flow") + 20 * d
                scores = level * np.linspace(0.3, 1.0, len(EVAL_STEPS)) + rng.normal(0, 8, 5)
                best = np.maximum.accumulate(scores)
                rows = []
                for step, score, top in zip(EVAL_STEPS, scores, best, strict=True):
                    rows.append({"step": step, "train/loss": float(rng.uniform(0.1, 1))})
                    rows.append(
                        {
                            "step": step,
                            "eval/normalized_mean_last": float(score),
                            "eval/normalized_mean_best": float(top),
                        }
                    )
                if seed == 1:  # a resumed run logs its last evaluation again: the later wins
                    rows.insert(-1, {**rows[-1], "eval/normalized_mean_last": -1e6})
                config = {
                    "name": f"{attention}-{d}-{seed}",
                    "seed": seed,
                    "out_dir": "runs",
                    "steps": 500,
                    "data": {"dataset": dataset},
                    "model": {"attention": attention, "embed_dim": 16},
                }
                write_run(tmp_path / "runs" / config["name"], config, rows, torn=seed == 2)
                finals.setdefault(("last", attention, dataset), []).append(float(scores[-1]))
                finals.setdefault(("best", attention, dataset), []).append(float(best[-1]))
    return tmp_path / "runs", finals
