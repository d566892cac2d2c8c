"""`flowrl bench memory --smoke`, end to end in a real subprocess: collect, one sweep, the
evaluation at a longer corridor, the JSON with the machine and command, and the figure,
all under --out and the test's own dataset folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from flowrl.cli import main
from flowrl.data import load_dataset
from flowrl.data.stretch import stretch_dataset
from flowrl.studies import memory
from tests.benchmarks.smoke import ROOT, run_checked
from tests.timeouts import scaled


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
    (x2,) = (out / "generalisation").glob("*-x2.json")
    assert json.loads(x2.read_text())["attention_eps"] == 1e-6  # as trained
    # the same runs acting with another eps: evaluated again, into files of their own
    again = ["--report-only", "--acting-eps", "1e-9", "--json", str(out / "eps.json")]
    assert main([*argv, *again]) == 0
    (x2_eps,) = (out / "generalisation").glob("*-x2-eps1e-09.json")
    assert json.loads(x2_eps.read_text())["attention_eps"] == 1e-9
    assert json.loads((out / "eps.json").read_text())["acting_eps"] == 1e-9


@pytest.mark.parametrize(
    ("task", "size", "random_length", "variant"),
    [
        ("minigrid", 7, False, "flow-relu-episode"),
        ("minigrid-random-up-close", 21, True, "flow-relu-episode-4heads-keygate-stretch"),
    ],
)
def test_minigrid_smoke_collects_trains_and_acts_in_a_longer_hallway(
    tmp_path, monkeypatch, task, size, random_length, variant
):
    """The same pipeline on MiniGrid-Memory: scripted data, the grid encoder, an episode
    context as long as the longest collected episode, and the size whose way from the room
    to the end is twice as long (7 -> 11); a task whose data has hallways of every length
    (random_length) and another policy is evaluated in a fixed hallway, and its variant
    trains on stretched data (size 21: in the smoke's 7 no hallway view repeats), with
    a context as long as the longest stretched episode."""
    out = tmp_path / "out"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    argv = ["bench", "memory", "--task", task, "--smoke", "--jobs", "1", "--out", str(out)]
    argv += ["--variants", variant, "--lengths", str(size)]
    stdout = run_checked([sys.executable, "-m", "flowrl", *argv], env, timeout=240)
    dataset = f"minigrid-memory-{size}{'-random-up-close' if random_length else ''}-v0"
    metadata = tmp_path / "data" / "flowrl" / dataset / "data" / "metadata.json"
    spec = json.loads(json.loads(metadata.read_text())["env_spec"])
    assert spec["kwargs"].get("random_length") is random_length and spec["kwargs"]["size"] == size
    doc = json.loads((out / "memory.json").read_text())
    trained = doc["trained"][variant][str(size)]
    assert trained["n"] == 1 and trained["steps"] == [10] and -100 <= trained["mean"] <= 100
    assert doc["generalisation"][variant]["2"][str(size)]["n"] == 1
    (longer,) = (out / "generalisation").glob("*-x2.json")
    twice = 2 * size - 3
    expected = {"size": twice, "random_length": False} if random_length else {"size": twice}
    assert json.loads(longer.read_text())["env_kwargs"] == expected
    (config_file,) = (out / f"{task}-L{size}-{variant}" / "runs").glob("*/config.yaml")
    config = yaml.safe_load(config_file.read_text())
    assert config["model"]["state_encoder"] == "grid"
    stretch = [2, 4] if variant.endswith("stretch") else []
    assert config["data"]["stretch"] == stretch
    monkeypatch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
    data = stretch_dataset(load_dataset(f"flowrl/{dataset}"), stretch)
    assert config["model"]["context_len"] == data.lengths.max()
    assert (out / f"{task}.png").stat().st_size > 0
    assert re.search(rf"{variant} +L={size} -> {twice}", stdout), stdout


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


def bench(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flowrl", "bench", "memory", "--smoke", *argv]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=scaled(600)
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--jobs", "0"], "--jobs 0: expected a positive integer"),
        (["--generalise", "0"], "--generalise 0: expected a positive integer"),
        (["--reps", "0"], "--reps 0: expected a positive integer"),
        (["--acting-eps", "0"], "--acting-eps 0.0: expected a number > 0"),
        (["--lengths", "7", "7"], "--lengths: 7 is given twice"),
        (["--seeds", "1-0"], "--seeds '1-0'"),
        (["--figure", "x.xyz"], "--figure x.xyz: expected a file ending in one of"),
        (["--json", "."], "--json .: is a folder"),
    ],
)
def test_bad_options_stop_before_anything_is_collected(tmp_path, flags, message):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    done = bench(["--out", str(tmp_path / "out"), *flags], env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "out" / "logs").exists()


def test_a_dataset_of_another_size_and_another_tasks_results_are_not_reused(tmp_path):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    collect = ["collect", "--env", "flowrl/TMazePassive-v0", "--env-kwargs", "length=4"]
    collect += ["--episodes", "6", "--dataset-id", "flowrl/tmaze-passive-4-v0"]
    made = subprocess.run([sys.executable, "-m", "flowrl", *collect], env=env, timeout=scaled(600))
    assert made.returncode == 0
    out = tmp_path / "out"
    done = bench(["--out", str(out)], env)  # the smoke grid collects 16 episodes
    assert done.returncode == 2, done.stderr
    assert "flowrl/tmaze-passive-4-v0 holds 6 episodes, --dataset-episodes asks for 16" in (
        done.stderr
    )
    assert not (out / "logs").exists()
    results = out / "memory.json"
    results.write_text(json.dumps({"task": "minigrid", "trained": {"x": 1}}))
    before = results.read_bytes()
    again = bench(["--out", str(out), "--report-only"], env)
    assert again.returncode == 2 and "holds the results of task 'minigrid'" in again.stderr
    assert results.read_bytes() == before


def test_sigterm_stops_the_sweeps_it_started_and_they_save(tmp_path):
    """`kill` of the benchmark alone (its sweep runs in a child) reaches the sweep: the run
    saves and stops, nothing runs on without a parent, and the benchmark exits 143 with one
    line. Before, the sweep trained on as an orphan."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flowrl", "bench", "memory", "--smoke", "--steps", "100000"]
    bench_process = subprocess.Popen(
        [*cmd, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    run_dir = out / "passive-L4-flow-episode" / "runs" / "seed-0"
    deadline = time.monotonic() + scaled(300)
    while not (run_dir / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        assert bench_process.poll() is None, bench_process.stderr.read()
        time.sleep(0.2)
    run_pid = int((run_dir / ".lock").read_text())
    bench_process.send_signal(signal.SIGTERM)
    _, err = bench_process.communicate(timeout=scaled(120))
    assert bench_process.returncode == 143, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("flowrl bench: stopped by SIGTERM: the sweeps saved")
    )
    assert "Traceback" not in err and (run_dir / "checkpoints" / "last.pt").is_file()
    with pytest.raises(ProcessLookupError):  # the run's process is gone
        os.kill(run_pid, 0)
