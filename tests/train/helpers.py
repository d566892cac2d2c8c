"""Helpers of the CLI tests: `flowrl` in a subprocess, tiny configs, logged losses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]
DATASET = "tests/pendulum-v0"


def flowrl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowrl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(600),
    )


def write_config(path: Path, out_dir: Path, **model) -> Path:
    cfg = {
        "name": "tiny",
        "out_dir": str(out_dir),
        "steps": 30,
        "log_every": 1,
        "checkpoint_every": 15,
        "data": {"dataset": DATASET, "return_scale": 100.0},
        "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2, "context_len": 8, **model},
        "optim": {"batch_size": 8, "warmup_steps": 5, "lr": 3e-3},
        "eval": {"every": 20, "episodes": 2, "num_envs": 2, "max_steps": 15},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def train(env, config: Path, *extra: str) -> subprocess.CompletedProcess:
    done = flowrl(["train", "--config", str(config), "--no-progress", *extra], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
