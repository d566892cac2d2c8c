"""The README's Python example runs as written, in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[1]

# Run after the example: the reloaded agent acts exactly as the trained one.
CHECK = """
import json
import numpy as np
obs = np.random.default_rng(0).normal(size=(3, 3))
acts = [a.policy(3, 10).act(obs) for a in (agent, same)]
np.testing.assert_array_equal(acts[0], acts[1])
print("CHECK", json.dumps([r.summary() for r in flowrl.evaluate(agent, episodes=2)]))
"""


def python_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_python_example_trains_evaluates_saves_and_loads(tmp_path):
    code = python_example()
    assert len(code.strip().splitlines()) <= 15, "the example should stay about a dozen lines"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code + CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(600),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if "normalized_mean" in line]
    assert len(printed) == 2 + 1  # one summary per target, then the check's line
    summaries = json.loads(printed[-1].removeprefix("CHECK "))
    assert all(s["episodes"] == 2 and s["normalized_mean"] is not None for s in summaries)
    run = tmp_path / "runs" / "demo-pendulum-v0"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(50, 201, 50))
    assert (run / "checkpoints" / "last.pt").is_file() and (
        tmp_path / "pendulum-agent.pt"
    ).is_file()
