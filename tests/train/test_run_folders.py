"""Run folders and recovery, with real `flowrl train` processes: locks, kills, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowrl.agents.checkpoint import load_checkpoint
from tests.timeouts import scaled
from tests.train.helpers import DATASET, ROOT, flowrl, train, write_config


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Subprocess environment with a small scripted-Pendulum Minari dataset of its own."""
    root = tmp_path_factory.mktemp("minari")
    environ = {**os.environ, "MINARI_DATASETS_PATH": str(root), "PYTHONPATH": str(ROOT)}
    done = flowrl(["collect", "--episodes", "6", "--dataset-id", DATASET, "--seed", "3"], environ)
    assert done.returncode == 0, done.stderr
    return environ


def long_run(env, config: Path, *extra: str) -> subprocess.Popen:
    """A `flowrl train` that would take minutes: logs every step, no periodic evaluation."""
    cmd = [sys.executable, "-m", "flowrl", "train", "--config", str(config), "--no-progress"]
    cmd += ["--set", "steps=100000", "--set", "eval.every=0", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    """Steps of `tag` in metrics.jsonl, in file order (repeats kept)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written right now
            break
    return [r["step"] for r in rows if tag in r]


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"exited early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def event_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    """Steps of `tag` as TensorBoard's own reader shows them (purged steps hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_second_run_into_a_busy_folder_exits_naming_the_holder(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    first = long_run(env, config)
    try:
        wait_for(lambda: len(logged_steps(run_dir)) >= 2, first)
        for extra in ([], ["--overwrite"], ["--resume"]):
            second = flowrl(["train", "--config", str(config), "--no-progress", *extra], env)
            assert second.returncode == 2, second.stderr
            assert str(run_dir) in second.stderr and f"PID {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr
        # SIGTERM: the first run saves where it is and exits 143
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=scaled(120))
    finally:
        first.kill()
    assert first.returncode == 143, stderr
    assert "SIGTERM" in stderr and "--resume" in stderr and "Traceback" not in stderr
    steps = logged_steps(run_dir)
    assert steps == list(range(1, len(steps) + 1))  # one writer only
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == steps[-1]


def test_new_run_into_a_used_folder_needs_resume_or_overwrite(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)  # left by a run that died before its first checkpoint
    (run_dir / ".flowrl-run").write_text("")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "train/loss": 9.0}\n')
    args = ["train", "--config", str(config), "--no-progress", "--set", "steps=3"]
    args += ["--set", "eval.every=0"]
    refused = flowrl(args, env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(run_dir) in refused.stderr
    assert all(word in refused.stderr for word in ("--resume", "--overwrite", "metrics.jsonl"))
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1, "train/loss": 9.0}\n'

    done = flowrl([*args, "--overwrite"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert logged_steps(run_dir) == [1, 2, 3]
    assert event_steps(run_dir) == [1, 2, 3]
    both = flowrl([*args, "--overwrite", "--resume"], env)
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_sigkill_between_checkpoints_then_resume_logs_each_step_once(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    checkpoint = run_dir / "checkpoints" / "last.pt"
    run = long_run(env, config, "--set", "checkpoint_every=20")
    try:
        while True:  # freeze the run to look: kill it only with steps past its checkpoint
            wait_for(lambda: checkpoint.is_file() and len(logged_steps(run_dir)) >= 25, run)
            run.send_signal(signal.SIGSTOP)
            if logged_steps(run_dir)[-1] > load_checkpoint(checkpoint)["step"]:
                break
            run.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=scaled(60))
    finally:
        run.kill()
    saved = load_checkpoint(checkpoint)["step"]
    before = logged_steps(run_dir)
    assert saved % 20 == 0 and before[-1] > saved  # steps past the checkpoint were logged
    stale = run_dir / "checkpoints" / f".last.pt.{run.pid}.tmp"  # as a kill during a save
    stale.write_bytes(b"half a checkpoint")

    end = before[-1] + 4
    args = ["train", "--config", str(config), "--no-progress", "--resume"]
    done = flowrl([*args, "--set", f"steps={end}", "--set", "eval.every=0"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not stale.exists()
    assert logged_steps(run_dir) == list(range(1, end + 1))
    assert event_steps(run_dir) == list(range(1, end + 1))


def test_ctrl_c_saves_the_current_step_and_exits_130(env, tmp_path):
    """SIGTERM (exit 143) is the same path: see the busy-folder test."""
    signum, code = signal.SIGINT, 130
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    run = long_run(env, config, "--set", "checkpoint_every=100000")
    try:
        wait_for(lambda: len(logged_steps(run_dir)) >= 7, run)
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=scaled(120))
    finally:
        run.kill()
    assert run.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr
    assert signal.Signals(signum).name in lines[0] and "--resume" in lines[0]
    steps = logged_steps(run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert saved == steps[-1] >= 7  # every step trained so far, none lost
    assert f"after step {saved}" in lines[0]


def test_out_dir_under_a_file_is_one_line(env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = flowrl(["train", "--no-progress", "--set", f"out_dir={blocker}/runs"], env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(blocker / "runs" / "quickstart") in done.stderr
    assert "Not a directory" in done.stderr


def folder_state(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a folder: its bytes and its modification time in ns."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_resume_of_a_finished_run_changes_nothing(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    train(env, config, "--set", "steps=20")
    run_dir = tmp_path / "runs" / "tiny"
    before = folder_state(run_dir)
    resume = ["train", "--config", str(config), "--no-progress", "--set", "steps=20", "--resume"]
    done = flowrl(resume, env)
    assert done.returncode == 0, done.stderr
    assert f"run {run_dir} finished at step 20: nothing to do" in done.stdout
    assert folder_state(run_dir) == before  # no evaluation, no row, no file written
    # more steps than it trained: not finished, it trains on
    longer = flowrl([*resume[:-2], "steps=25", "--resume"], env)
    assert longer.returncode == 0 and "nothing to do" not in longer.stdout, longer.stderr
    assert logged_steps(run_dir)[-1] == 25


def one_line_exit_2(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(word in done.stderr for word in words), done.stderr


def tree(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under `folder`: a file's bytes and mtime, a folder's None."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def test_names_that_leave_out_dir_are_refused_and_nothing_is_touched(env, tmp_path):
    """`name=.` was out_dir itself (and --overwrite emptied it, sibling runs and all),
    `name=..` its parent, `name=/abs/path` a folder anywhere."""
    out_dir = tmp_path / "work" / "runs"
    config = write_config(tmp_path / "tiny.yaml", out_dir)
    train(env, config, "--set", "steps=3", "--set", "eval.every=0")  # a sibling run
    (out_dir / "notes.txt").write_text("mine")
    elsewhere = tmp_path / "abs" / "path"
    elsewhere.mkdir(parents=True)
    (elsewhere / ".flowrl-run").write_text("")  # even one marked as a run's
    (elsewhere / "data.bin").write_bytes(b"keep")
    before = tree(tmp_path)
    for name in (".", "..", "../x", str(elsewhere)):
        args = ["train", "--config", str(config), "--no-progress", "--overwrite"]
        done = flowrl([*args, "--set", f"name={name}"], env)
        one_line_exit_2(done, "name '", "expected a plain folder name")
        assert tree(tmp_path) == before


def test_overwrite_empties_only_a_folder_a_run_made(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    mine = tmp_path / "runs" / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "thesis.tex").write_text("years of work")
    (mine / "config.yaml").write_text("not a run's\n")  # a config.yaml alone is not a run
    before = tree(mine)
    args = ["train", "--config", str(config), "--no-progress", "--set", "eval.every=0"]
    done = flowrl([*args, "--set", "name=mine", "--overwrite"], env)
    one_line_exit_2(done, str(mine), "not made by flowrl", "left as they are")
    assert tree(mine) == before and not (mine / ".lock").exists()

    # a real earlier run: --overwrite starts it over; steps=010 is ten steps, not octal 8
    run_dir = tmp_path / "runs" / "tiny"
    train(env, config, *args[4:], "--set", "steps=4")
    assert (run_dir / ".flowrl-run").is_file() and logged_steps(run_dir) == [1, 2, 3, 4]
    train(env, config, *args[4:], "--set", "steps=010", "--overwrite")
    assert logged_steps(run_dir) == list(range(1, 11))
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 10
    # a run from before the marker (config.yaml and metrics.jsonl): still a run folder
    (run_dir / ".flowrl-run").unlink()
    train(env, config, *args[4:], "--set", "steps=2", "--overwrite")
    assert logged_steps(run_dir) == [1, 2] and (run_dir / ".flowrl-run").is_file()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("seed=-1", "seed=-1: expected an integer >= 0"),
        ("eval.seed=-1", "eval.seed=-1: expected an integer >= 0"),
        ("model.embed_dim=true", "model.embed_dim"),
        ("steps=0x10", "steps"),
        ("device=cuda:x", "device='cuda:x': expected auto, cpu, cuda or cuda:N"),
        ("threads=-1", "threads=-1: expected an integer >= 0"),
    ],
)
def test_bad_values_stop_before_the_run_folder(env, tmp_path, setting, message):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    done = flowrl(["train", "--config", str(config), "--no-progress", "--set", setting], env)
    one_line_exit_2(done, message)
    assert not (tmp_path / "runs").exists()


def test_resume_applies_what_may_change_and_refuses_the_rest_by_name(env, tmp_path):
    """Steps, logging and evaluation may change on --resume and apply from there; a changed
    learning rate, seed or model is refused with each key named, finished or not."""
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    train(env, config, "--set", "steps=20")
    run_dir = tmp_path / "runs" / "tiny"
    before = folder_state(run_dir)
    resume = ["train", "--config", str(config), "--no-progress", "--resume"]
    changed = ["--set", "steps=25", "--set", "optim.lr=5e-4", "--set", "seed=1"]
    changed = flowrl([*resume, *changed], env)
    one_line_exit_2(changed, "optim.lr (0.003 there, 0.0005 here)", "seed (0 there, 1 here)")
    # finished at 20 and asked for 20: a changed model is refused, not "nothing to do"
    model = flowrl([*resume, "--set", "steps=20", "--set", "model.embed_dim=32"], env)
    one_line_exit_2(model, "model.embed_dim (16 there, 32 here)")
    assert folder_state(run_dir) == before
    longer = ["--set", "steps=30", "--set", "log_every=5", "--set", "eval.episodes=1"]
    train(env, config, "--resume", *longer)
    assert logged_steps(run_dir)[-3:] == [20, 25, 30]
    recorded = (run_dir / "config.yaml").read_text()
    assert "log_every: 5" in recorded and "episodes: 1" in recorded
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_config"]["steps"] == 30


def test_ctrl_c_during_the_final_evaluation_stops_it_and_resume_makes_it(env, tmp_path):
    """A final evaluation of minutes (400 Pendulum episodes one at a time) ends at the next
    env step after SIGINT: last.pt at the last step, not finished, one line, exit 130."""
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    cmd = [sys.executable, "-m", "flowrl", "train", "--config", str(config), "--no-progress"]
    cmd += ["--set", "steps=5", "--set", "checkpoint_every=5", "--set", "eval.every=0"]
    cmd += ["--set", "eval.episodes=400", "--set", "eval.num_envs=1"]
    cmd += ["--set", "eval.max_steps=200"]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        last = run_dir / "checkpoints" / "last.pt"
        wait_for(lambda: last.is_file() and 5 in logged_steps(run_dir), run)
        time.sleep(2)  # into the evaluation
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=scaled(120))
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "final evaluation was stopped" in lines[0], stderr
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 5 and not state["finished"]
    # --resume makes the final evaluation (shorter now: evaluation settings may change)
    done = train(env, config, "--resume", "--set", "steps=5", "--set", "eval.episodes=1")
    assert "target" in done.stdout
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["finished"]


def test_threads_is_the_setting_or_the_launchers_count(env, tmp_path):
    """`threads=N` trains with N torch threads; `threads=0` with the OMP_NUM_THREADS a
    launcher set (a sweep sets cores // jobs); perf/threads records it."""
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    run_dir = tmp_path / "runs" / "tiny"
    short = ("--set", "steps=2", "--set", "eval.every=0")

    def logged_threads() -> set[float]:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {row["perf/threads"] for row in rows if "perf/threads" in row}

    train({**env, "OMP_NUM_THREADS": "2"}, config, *short)
    assert logged_threads() == {2}
    train({**env, "OMP_NUM_THREADS": "2"}, config, *short, "--set", "threads=1", "--overwrite")
    assert logged_threads() == {1}
