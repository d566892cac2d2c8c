"""`flowrl sweep` with real `flowrl train` processes on a tiny dataset of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from flowrl.cli import main
from tests.experiments.conftest import ROOT, flowrl

DATASET = "tests/pendulum-v0"
# one torch thread per run: tiny models gain nothing from more, and a busy CI machine loses
GRID = ["--grid", "model.attention=flow,softmax", "--seeds", "0-1", "--threads", "1"]
RUNS = [f"attention-{a}_seed-{s}" for a in ("flow", "softmax") for s in (0, 1)]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A small scripted-Pendulum Minari dataset for the runs."""
    root = tmp_path_factory.mktemp("minari")
    environ = {"MINARI_DATASETS_PATH": str(root)}
    done = flowrl(
        "collect", "--episodes", "12", "--dataset-id", DATASET, "--seed", "3", env=environ
    )
    assert done.returncode == 0, done.stderr
    return environ


def tiny_config(path: Path, **top) -> Path:
    cfg = {
        "steps": 20,
        "log_every": 5,
        "checkpoint_every": 10,
        "data": {"dataset": DATASET},
        "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2, "context_len": 8},
        "optim": {"batch_size": 8, "warmup_steps": 5},
        "eval": {"every": 10, "episodes": 1, "num_envs": 1, "max_steps": 15},
        **top,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def manifest(sweep: Path) -> dict:
    return json.loads((sweep / "manifest.json").read_text())["runs"]


def steps_logged(run_dir: Path, key: str) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if key in row]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie that no one reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_sweep_runs_the_grid_times_the_seeds(env, tmp_path):
    config = tiny_config(tmp_path / "tiny.yaml")
    args = ["sweep", "--config", str(config), *GRID, "--out-dir", str(tmp_path), "--jobs", "2"]
    done = flowrl(*args, "--name", "grid", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "grid"
    runs = manifest(sweep)
    assert sorted(runs) == sorted(RUNS)
    for name, run in runs.items():
        assert run["status"] == "done" and len(run["attempts"]) == 1
        attention, seed = name.split("_")[0].split("-")[1], int(name.rsplit("-", 1)[1])
        assert run["overrides"] == [f"model.attention={attention}", f"seed={seed}"]
        config = yaml.safe_load((sweep / "runs" / name / "config.yaml").read_text())
        assert config["model"]["attention"] == attention and config["seed"] == seed
        assert config["steps"] == 20  # the base config's settings
        assert steps_logged(sweep / "runs" / name, "eval/normalized_mean_last") == [10, 20]
        assert (sweep / "logs" / f"{name}.log").is_file()

    # the same command again has nothing to do
    again = flowrl(*args, "--name", "grid", "--no-progress", env=env)
    assert again.returncode == 0, again.stderr
    assert "4 finished before, 0 to run" in again.stderr
    assert all(len(run["attempts"]) == 1 for run in manifest(sweep).values())

    # --list: one `flowrl train` command per run that trains that run
    listed = flowrl(*args, "--name", "grid", "--list", env=env)
    lines = listed.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("flowrl train --config ") for line in lines)
    assert f"--set name={RUNS[0]}" in lines[0] and "--set seed=0" in lines[0]
    report = flowrl("report", str(sweep), "--json", "--reps", "500")
    groups = json.loads(report.stdout)["groups"]
    assert {(g["label"]["model.attention"], g["n"]) for g in groups} == {
        ("flow", 2),
        ("softmax", 2),
    }


@pytest.mark.slow
def test_killed_sweep_finishes_only_what_was_missing(env, tmp_path):
    config = tiny_config(tmp_path / "tiny.yaml", steps=100, log_every=10, checkpoint_every=10)
    config_args = ["--config", str(config), *GRID, "--out-dir", str(tmp_path), "--name", "k"]
    sweep = tmp_path / "k"
    process = subprocess.Popen(
        [sys.executable, "-m", "flowrl", "sweep", *config_args, "--no-progress"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, to see its children end
    )
    # kill the sweep (only the sweep process) once the first run has finished and the second
    # has written a checkpoint
    second = sweep / "runs" / RUNS[1] / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = manifest(sweep) if (sweep / "manifest.json").is_file() else {}
        if runs and runs[RUNS[0]]["status"] == "done" and second.is_file():
            break
        assert process.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.05)
    else:
        pytest.fail("the sweep never reached its second run")
    child = int((sweep / "runs" / RUNS[1] / ".lock").read_text())
    process.send_signal(signal.SIGKILL)
    process.wait()
    for _ in range(1200):  # the running `flowrl train` follows its sweep
        if not alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("a run outlived its killed sweep")
    assert manifest(sweep)[RUNS[1]]["status"] == "running"
    assert not (sweep / "runs" / RUNS[2]).exists()
    first_metrics = (sweep / "runs" / RUNS[0] / "metrics.jsonl").read_bytes()

    done = flowrl("sweep", *config_args, "--no-progress", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 finished before, 3 to run (1 resumed from last.pt)" in done.stderr
    runs = manifest(sweep)
    assert all(run["status"] == "done" for run in runs.values())
    assert [a["resumed"] for a in runs[RUNS[0]]["attempts"]] == [False]  # not run again
    assert [a["resumed"] for a in runs[RUNS[1]]["attempts"]] == [False, True]
    assert [a["resumed"] for a in runs[RUNS[2]]["attempts"]] == [False]
    assert (sweep / "runs" / RUNS[0] / "metrics.jsonl").read_bytes() == first_metrics
    resumed = steps_logged(sweep / "runs" / RUNS[1], "train/loss")
    assert resumed[0] == 10 and resumed[-1] == 100  # continued from its checkpoint to the end
    assert sorted(set(resumed)) == list(range(10, 101, 10))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_run_does_not_stop_the_others(env, tmp_path):
    config = tiny_config(tmp_path / "tiny.yaml")
    done = flowrl(
        "sweep",
        "--config",
        str(config),
        "--grid",
        "device=cpu,cuda",
        "--out-dir",
        str(tmp_path),
        "--name",
        "f",
        "--jobs",
        "2",
        "--no-progress",
        env=env,
    )
    assert done.returncode == 1
    assert "run device-cuda_seed-0 failed (exit 2)" in done.stderr
    assert "CUDA is not available" in done.stderr
    runs = manifest(tmp_path / "f")
    assert runs["device-cpu_seed-0"]["status"] == "done"
    assert runs["device-cuda_seed-0"]["status"] == "failed"
    assert "1/2 runs finished, 1 failed" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "model.attention=flow,linear"], "model.attention='linear'"),
        (["--grid", "optim.lrr=1,2"], "optim.lrr"),
        (["--grid", "seed=1,2"], "use --seeds"),
        (["--seeds", "3-1"], "backwards"),
        (["--set", "data.dataset=tests/missing-v0"], "tests/missing-v0"),
    ],
)
def test_bad_sweeps_stop_before_any_run(env, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
    config = tiny_config(tmp_path / "tiny.yaml")
    code = main(["sweep", "--config", str(config), "--out-dir", str(tmp_path), *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.glob("*/runs"))


def test_list_extends_a_sweep_and_refuses_another(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
    config = tiny_config(tmp_path / "tiny.yaml")
    base = ["sweep", "--config", str(config), "--out-dir", str(tmp_path), "--name", "s"]
    grid = ["--grid", "model.attention=flow,softmax", "--list"]
    assert main([*base, *grid, "--seeds", "0"]) == 0
    assert main([*base, *grid, "--seeds", "0-2"]) == 0  # more seeds: more runs, same sweep
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 6
    assert len(manifest(tmp_path / "s")) == 6
    assert all(run["status"] == "pending" for run in manifest(tmp_path / "s").values())
    # other shared settings or another base config make another sweep: refused
    assert main([*base, *grid, "--set", "steps=5"]) == 2
    assert "other --set settings" in capsys.readouterr().err
    config.write_text(config.read_text() + "# a comment changes no setting\n")
    assert main([*base, *grid]) == 0
    capsys.readouterr()
    config.write_text(config.read_text().replace("steps: 20", "steps: 21"))
    assert main([*base, *grid]) == 2
    assert "another base config" in capsys.readouterr().err
