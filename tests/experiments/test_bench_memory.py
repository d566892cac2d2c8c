"""`flowrl bench memory --smoke`, end to end in a real subprocess: collect, one sweep, the
evaluation at a longer corridor, the JSON with the machine and command, and the figure,
all under --out and the test's own dataset folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.benchmarks.smoke import ROOT, committed_files


def test_memory_smoke_runs_the_whole_pipeline(tmp_path):
    before = committed_files()
    out = tmp_path / "out"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    argv = ["bench", "memory", "--smoke", "--jobs", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "flowrl", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert committed_files() == before
    assert (tmp_path / "data" / "flowrl" / "tmaze-passive-4-v0").is_dir()
    doc = json.loads((out / "memory.json").read_text())
    assert doc["machine"]["profile"] == "smoke" and doc["machine"]["argv"][1:] == argv
    assert doc["machine"]["cpu"] and doc["machine"]["torch"]
    trained = doc["trained"]["flow-episode"]["4"]
    assert trained["n"] == 1 and trained["steps"] == [10] and -100 <= trained["mean"] <= 100
    longer = doc["generalisation"]["flow-episode"]["2"]["4"]
    assert longer["n"] == 1 and len(longer["runs"]) == 1
    assert (out / "tmaze.png").stat().st_size > 0
    assert "flow-episode                   L=4 -> 8" in done.stdout
