"""A sweep owns its folder: its lock, run identities, plain names, large grids, signals
passed on once to its runs, and finished runs left as they are."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flowrl.cli import main
from flowrl.experiments.grid import MAX_RUNS
from flowrl.experiments.identity import identity
from flowrl.train.config_files import load_config
from flowrl.train.progress import saved_step
from flowrl.train.run_dir import FolderLock
from tests.experiments.conftest import ROOT, flowrl
from tests.experiments.test_sweep import env, manifest, steps_logged, tiny_config  # noqa: F401
from tests.timeouts import scaled
from tests.train.test_run_folders import folder_state


def sweep_args(config: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["sweep", "--config", str(config), "--out-dir", str(out), "--name", name, *extra]


@pytest.fixture
def listing(env, tmp_path, monkeypatch):  # noqa: F811
    """In-process `flowrl sweep ... --list` on the tiny config: (exit code, stdout, stderr)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
    config = tiny_config(tmp_path / "tiny.yaml")

    def run(capsys, name: str, *extra: str) -> tuple[int, str, str]:
        code = main([*sweep_args(config, tmp_path, name, "--list"), *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_list_waits_for_no_one_it_names_the_holder(listing, tmp_path, capsys):
    assert listing(capsys, "s")[0] == 0
    before = (tmp_path / "s" / "manifest.json").read_bytes()
    with FolderLock(tmp_path / "s", "sweep"):  # a running sweep holds it
        code, _, err = listing(capsys, "s", "--seeds", "0-3")
    assert code == 2
    assert (
        f"sweep folder {tmp_path / 's'} is in use by another flowrl sweep (PID {os.getpid()})"
        in err
    )
    assert (tmp_path / "s" / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden"])
def test_sweep_names_are_plain(listing, tmp_path, capsys, name):
    code, _, err = listing(capsys, name)
    assert code == 2 and f"--name {name!r}: expected a plain folder name" in err
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name == "escape") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_a_large_grid_needs_yes_and_then_streams(listing, tmp_path, capsys):
    code, _, err = listing(capsys, "big", "--seeds", f"0-{MAX_RUNS}")
    assert code == 2 and f"{MAX_RUNS + 1} runs ({MAX_RUNS + 1} seeds), more than {MAX_RUNS}" in err
    assert not (tmp_path / "big").exists()
    seeds = 5 * MAX_RUNS
    start = time.monotonic()
    code, out, _ = listing(capsys, "big", "--seeds", f"0-{seeds - 1}", "--yes")
    elapsed = time.monotonic() - start
    assert code == 0 and len(out.splitlines()) == seeds and len(manifest(tmp_path / "big")) == seeds
    assert elapsed < 60  # 22 ms a run (110 s) when each run's config was loaded on its own


def test_a_grid_that_repeats_runs_maps_onto_them(listing, tmp_path, capsys):
    assert listing(capsys, "s", "--seeds", "0-1")[0] == 0
    default = load_config(tmp_path / "tiny.yaml").model.attention
    other = "softmax" if default != "softmax" else "flow"
    code, out, err = listing(
        capsys, "s", "--grid", f"model.attention={default},{other}", "--seeds", "0-1"
    )
    assert code == 0
    names = [re.search(r"--set name=(\S+)", line).group(1) for line in out.splitlines()]
    assert names == ["seed-0", "seed-1", f"attention-{other}_seed-0", f"attention-{other}_seed-1"]
    assert "2 run(s) of this grid have the settings and seed of runs the sweep holds" in err
    assert f"attention-{default}_seed-0 = seed-0" in err
    assert sorted(manifest(tmp_path / "s")) == sorted(names)


def test_a_run_finished_outside_the_sweep_is_left_as_it_is(env, listing, tmp_path, capsys):  # noqa: F811
    _, out, _ = listing(capsys, "s")
    (line,) = out.splitlines()
    by_hand = [sys.executable, "-m", "flowrl", *shlex.split(line)[1:]]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    subprocess.run(by_hand, env=environ, check=True, capture_output=True, timeout=scaled(600))
    run_dir = tmp_path / "s" / "runs" / "seed-0"
    before = folder_state(run_dir)
    config = tmp_path / "tiny.yaml"
    done = flowrl(*sweep_args(config, tmp_path, "s", "--no-progress"), env=env)
    assert done.returncode == 0, done.stderr
    assert "run seed-0 was finished outside the sweep (step 20)" in done.stderr
    assert "1 runs, 1 finished before, 0 to run" in done.stderr
    assert folder_state(run_dir) == before  # no evaluation, no row, no file written
    run = manifest(tmp_path / "s")["seed-0"]
    assert run["status"] == "done" and run["attempts"] == []
    # the identity the sweep computed is the one `flowrl report` reads from config.yaml
    assert run["identity"] == identity(yaml.safe_load((run_dir / "config.yaml").read_text()))


def wait_until(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    steps = [0]
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):  # the line being written
            break
    return max(steps)


# When to stop the sweep, how (SIGINT to its process group as a terminal's Ctrl-C, or
# SIGTERM to the sweep alone as `kill` sends) and the step the run must at least have saved.
# Runs of 200 steps, checkpoints every 50, an evaluation at 100: far from the end.
CASES = {
    "first step": (lambda run: (run / "config.yaml").is_file(), "group", signal.SIGINT, 1),
    "between checkpoints": (lambda run: last_step(run) >= 63, "sweep", signal.SIGTERM, 63),
    "during an evaluation": (lambda run: last_step(run) >= 100, "group", signal.SIGINT, 100),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stopped_sweep_saves_each_run_where_it_was(env, tmp_path, case):  # noqa: F811
    ready, target, signum, least = CASES[case]
    config = tiny_config(
        tmp_path / "tiny.yaml",
        steps=200,
        log_every=1,
        checkpoint_every=50,
        eval={"every": 100, "episodes": 4, "num_envs": 1, "max_steps": 200},
    )
    args = [sys.executable, "-m", "flowrl", *sweep_args(config, tmp_path, "x", "--no-progress")]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    process = subprocess.Popen(
        [*args, "--threads", "1"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    run_dir = tmp_path / "x" / "runs" / "seed-0"
    wait_until(lambda: ready(run_dir), process)
    if target == "group":
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=scaled(600))
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum and f"stopped by {name}" in stderr, stderr
    step, finished = saved_step(run_dir)
    assert step >= least and not finished
    assert step == last_step(run_dir)  # saved at the step it reached: no work lost
    attempt = manifest(tmp_path / "x")["seed-0"]["attempts"][-1]
    assert manifest(tmp_path / "x")["seed-0"]["status"] == "interrupted"
    assert attempt["step"] == step and attempt["returncode"] == 128 + signum
    log = (tmp_path / "x" / "logs" / "seed-0.log").read_text()
    assert f"stopped by {name} after step {step}" in log  # one stop request: it saved
    if case == "during an evaluation":
        assert 100 in steps_logged(run_dir, "eval/normalized_mean_last")

    again = subprocess.run([*args, "--threads", "1"], env=environ, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    run = manifest(tmp_path / "x")["seed-0"]
    assert run["status"] == "done" and [a["resumed"] for a in run["attempts"]] == [False, True]
    assert steps_logged(run_dir, "train/loss") == list(range(1, 201))  # each step once
