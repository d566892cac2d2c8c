"""`flowrl bench memory --smoke`, end to end in a real subprocess: collect, one sweep, the
evaluation at a longer corridor, the JSON with the machine and command, and the figure,
all under --out and the test's own dataset folder."""

from __future__ import annotations

import json
import os
import sys

from flowrl.cli import main
from flowrl.experiments import memory
from tests.benchmarks.smoke import run_checked


def test_memory_smoke_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    argv = ["bench", "memory", "--smoke", "--jobs", "1", "--out", str(out)]
    stdout = run_checked([sys.executable, "-m", "flowrl", *argv], env, timeout=240)
    assert (tmp_path / "data" / "flowrl" / "tmaze-passive-4-v0").is_dir()
    doc = json.loads((out / "memory.json").read_text())
    assert doc["machine"]["profile"] == "smoke" and doc["machine"]["argv"][1:] == argv
    assert doc["machine"]["cpu"] and doc["machine"]["torch"]
    trained = doc["trained"]["flow-episode"]["4"]
    assert trained["n"] == 1 and trained["steps"] == [10] and -100 <= trained["mean"] <= 100
    longer = doc["generalisation"]["flow-episode"]["2"]["4"]
    assert longer["n"] == 1 and len(longer["runs"]) == 1
    assert (out / "passive.png").stat().st_size > 0
    assert "flow-episode                   L=4 -> 8" in stdout


def test_minigrid_smoke_collects_trains_and_acts_in_a_longer_hallway(tmp_path):
    """The same pipeline on MiniGrid-Memory: scripted data, the grid encoder, an episode
    context as long as the longest collected episode, and the size whose way from the room
    to the end is twice as long (7 -> 11)."""
    out = tmp_path / "out"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    argv = ["bench", "memory", "--task", "minigrid", "--smoke", "--jobs", "1", "--out", str(out)]
    stdout = run_checked([sys.executable, "-m", "flowrl", *argv], env, timeout=240)
    assert (tmp_path / "data" / "flowrl" / "minigrid-memory-7-v0").is_dir()
    doc = json.loads((out / "memory.json").read_text())
    trained = doc["trained"]["flow-relu-episode"]["7"]
    assert trained["n"] == 1 and trained["steps"] == [10] and -100 <= trained["mean"] <= 100
    assert doc["generalisation"]["flow-relu-episode"]["2"]["7"]["n"] == 1
    config = (out / "minigrid-L7-flow-relu-episode" / "runs").glob("*/config.yaml")
    assert "state_encoder: grid" in next(config).read_text()
    assert (out / "minigrid.png").stat().st_size > 0
    assert "flow-relu-episode              L=7 -> 11" in stdout


def test_renamed_variants_still_run_and_find_their_old_run_folders(tmp_path, capsys):
    out = tmp_path / "out"
    old = out / "passive-L30-flow-episode-4heads-mixed"  # a sweep from before the rename
    old.mkdir(parents=True)
    new = "flow-episode-4heads-multilength"
    assert memory.sweep_folder(out, "passive", 30, new) == old
    assert memory.sweep_folder(out, "passive", 100, new) == out / f"passive-L100-{new}"

    argv = ["bench", "memory", "--report-only", "--out", str(out), "--lengths", "10", "30"]
    assert main([*argv, "--variants", "flow-episode-4heads-mixed"]) == 2  # the folder is empty
    err = capsys.readouterr().err
    assert f"variant 'flow-episode-4heads-mixed' is now called '{new}'" in err
    assert f"no runs under {old}:" in err  # read under its old name
    assert main([*argv, "--variants", "flow-episode-best"]) == 2
    err = capsys.readouterr().err
    assert "--variants='flow-episode-best': expected one of flow-episode, " in err
