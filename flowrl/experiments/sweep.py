"""Run a sweep: each run is a plain `flowrl train` subprocess in a pool of `jobs` workers.

Run folders live in SWEEP/runs/NAME and belong to the sweep: a finished run is skipped, an
interrupted one with checkpoints/last.pt is resumed with --resume, and a folder without a
checkpoint is deleted and its run started afresh. Each run's output goes to SWEEP/logs/NAME.log.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from flowrl.data import load_or_collect
from flowrl.errors import UserError
from flowrl.experiments.grid import RunSpec
from flowrl.experiments.manifest import BASE_CONFIG, MANIFEST, Manifest, write_atomic
from flowrl.train.config import load_config


@dataclass
class Sweep:
    directory: Path
    config: Path | None  # the sweep's copy of the base config (None: flowrl's defaults)
    overrides: list[str]  # --set settings shared by every run
    runs: list[RunSpec]
    manifest: Manifest = field(repr=False)
    datasets: dict[str, bool] = field(default_factory=dict)  # dataset -> data.download

    def run_dir(self, run: RunSpec) -> Path:
        return self.directory / "runs" / run.name

    def log_path(self, run: RunSpec) -> Path:
        return self.directory / "logs" / f"{run.name}.log"

    def train_args(self, run: RunSpec, *, resume: bool = False) -> list[str]:
        """Arguments of `flowrl train` for this run."""
        args = ["train"] if self.config is None else ["train", "--config", str(self.config)]
        settings = [*self.overrides, *run.overrides, f"name={run.name}"]
        settings.append(f"out_dir={self.directory / 'runs'}")
        for item in settings:
            args += ["--set", item]
        return [*args, "--no-progress", *(["--resume"] if resume else [])]

    def command_line(self, run: RunSpec) -> str:
        """The shell command a scheduler runs for this run."""
        return shlex.join(["flowrl", *self.train_args(run)])

    def is_finished(self, run: RunSpec) -> bool:
        status = self.manifest.runs[run.name]["status"]
        return status == "done" and (self.run_dir(run) / "checkpoints" / "last.pt").is_file()

    def can_resume(self, run: RunSpec) -> bool:
        return (self.run_dir(run) / "checkpoints" / "last.pt").is_file()


def prepare(
    directory: Path, config: str | None, overrides: list[str], grid: dict, runs: list[RunSpec]
) -> Sweep:
    """Checks every run's config (a bad key or value stops here, before anything runs), then
    writes the sweep folder: base.yaml and the manifest."""
    directory = directory.resolve()
    base = directory / BASE_CONFIG
    text = None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        text = path.read_text()
    datasets = {}
    for run in runs:
        settings = [*overrides, *run.overrides, f"name={run.name}", f"out_dir={directory}"]
        try:
            cfg = load_config(config, settings)
        except UserError as err:
            raise UserError(f"run {run.name}: {err}") from None
        datasets[cfg.data.dataset] = datasets.get(cfg.data.dataset, False) or cfg.data.download
    existing = base.read_text() if base.is_file() else None
    if (directory / MANIFEST).is_file() and not _same_settings(existing, text):
        given = "none (flowrl's defaults)" if text is None else config
        raise UserError(
            f"{directory} holds a sweep of another base config than --config {given}: "
            "give this one another --name"
        )
    manifest = Manifest.open(directory, config=config, overrides=overrides, grid=grid)
    for run in runs:
        manifest.add(run.name, run.overrides)
    directory.mkdir(parents=True, exist_ok=True)
    if text is not None and existing is None:
        write_atomic(base, text)
    manifest.save()
    config_copy = base if text is not None else None
    return Sweep(directory, config_copy, overrides, runs, manifest, datasets)


def _same_settings(first: str | None, second: str | None) -> bool:
    """Whether two base configs (YAML texts, None for flowrl's defaults) hold the same
    settings: comments and layout do not count."""
    if first is None or second is None:
        return first is second
    return yaml.safe_load(first) == yaml.safe_load(second)


def ensure_datasets(sweep: Sweep) -> None:
    """Loads each dataset once before any run starts: a missing one stops the sweep here, a
    download happens once, and the quickstart set is collected once (as `flowrl train` would
    in every run at the same time)."""
    for dataset, download in sweep.datasets.items():
        load_or_collect(dataset, download=download)


@contextlib.contextmanager
def exclusive(directory: Path):
    """Holds SWEEP/.lock: one sweep process at a time works in a sweep folder."""
    with (directory / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another flowrl sweep is running in {directory}") from None
        yield


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the sweep dies, even by SIGKILL (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Running:
    run: RunSpec
    process: subprocess.Popen
    log: object


def execute(sweep: Sweep, *, jobs: int, threads: int, progress: bool = True) -> list[str]:
    """Runs every unfinished run of the sweep; returns the names of the runs that failed."""
    todo = [run for run in sweep.runs if not sweep.is_finished(run)]
    done_before = len(sweep.runs) - len(todo)
    resumable = sum(sweep.can_resume(run) for run in todo)
    print(
        f"sweep {sweep.directory}: {len(sweep.runs)} runs, {done_before} finished before, "
        f"{len(todo)} to run ({resumable} resumed from last.pt), "
        f"{jobs} at a time with {threads} threads each",
        file=sys.stderr,
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running, failed = list(todo), [], []
    tqdm.monitor_interval = 0  # no monitor thread: children are forked from one thread
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, file=sys.stderr)

    def show() -> None:
        done = bar.n - len(failed)
        bar.set_postfix(done=done, running=len(running), failed=len(failed), refresh=True)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                running.append(_start(sweep, pending.pop(0), env))
                show()
            time.sleep(0.2)
            for item in [r for r in running if r.process.poll() is not None]:
                running.remove(item)
                item.log.close()
                code = item.process.returncode
                sweep.manifest.ended(item.run.name, "done" if code == 0 else "failed", code)
                if code != 0:
                    failed.append(item.run.name)
                    tqdm.write(_failure(sweep, item.run, code), file=sys.stderr)
                bar.update(1)
                show()
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(sweep, running)
        bar.close()
    return failed


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _start(sweep: Sweep, run: RunSpec, env: dict[str, str]) -> _Running:
    resume = sweep.can_resume(run)
    run_dir = sweep.run_dir(run)
    if not resume and run_dir.exists():  # a start that never checkpointed: begin again
        shutil.rmtree(run_dir)
    log_path = sweep.log_path(run)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("a")
    command = [sys.executable, "-m", "flowrl", *sweep.train_args(run, resume=resume)]
    log.write(f"\n$ {shlex.join(command)}\n")
    log.flush()
    sweep.manifest.started(run.name, resumed=resume)
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    return _Running(run, process, log)


def _stop(sweep: Sweep, running: list[_Running]) -> None:
    """Stops runs still going (the sweep was interrupted); they resume next time."""
    for item in running:
        item.process.terminate()
    for item in running:
        try:
            item.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            item.process.kill()
            item.process.wait()
        item.log.close()
        code = item.process.returncode
        sweep.manifest.ended(item.run.name, "done" if code == 0 else "interrupted", code)


def _failure(sweep: Sweep, run: RunSpec, code: int) -> str:
    lines = sweep.log_path(run).read_text(errors="replace").strip().splitlines()
    tail = "\n".join(f"    {line}" for line in lines[-5:])
    return f"run {run.name} failed (exit {code}), log {sweep.log_path(run)}:\n{tail}"
