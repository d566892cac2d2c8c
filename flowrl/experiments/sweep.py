"""Run a sweep: each run is `flowrl.train.run` in a child process, `jobs` at a time.

The sweep folder belongs to one sweep process at a time (SWEEP/.lock, as a run folder is
locked). Run folders live in SWEEP/runs/NAME and belong to the sweep: a finished run is
skipped, an interrupted one with checkpoints/last.pt is resumed with --resume, and a folder
without a checkpoint is deleted and its run started afresh. A run is known by its identity
(settings and seed), so a grid point that repeats an earlier run under another name maps onto
it. Each run's output goes to SWEEP/logs/NAME.log.

Each run gets a process group of its own: a Ctrl-C in the terminal reaches the sweep alone,
and the sweep passes it on, once, to every running run, which saves last.pt and stops.
`run_grid` is a whole sweep as a library call (`flowrl sweep` without `--list`).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from flowrl.data import load_or_collect
from flowrl.errors import Interrupted, UserError
from flowrl.experiments.grid import RunSpec, expand, points
from flowrl.experiments.identity import identity
from flowrl.experiments.manifest import BASE_CONFIG, MANIFEST, Manifest
from flowrl.files import write_atomic
from flowrl.train import from_config
from flowrl.train.child import start_child
from flowrl.train.config import TrainConfig
from flowrl.train.config_files import composed_yaml, load_config
from flowrl.train.interrupt import StopOnSignal
from flowrl.train.progress import saved_step
from flowrl.train.run_dir import FolderLock

# Exit codes of a run stopped by a signal: it saved (130, 143) or had not started training
# yet (killed by the signal's default action).
STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}


@dataclass
class Sweep:
    directory: Path
    config: Path | None  # the sweep's copy of the base config (None: flowrl's defaults)
    overrides: list[str]  # --set settings shared by every run
    manifest: Manifest = field(repr=False)
    settings: dict[tuple, dict[str, Any]] = field(repr=False)  # grid point -> resolved config
    datasets: dict[str, bool] = field(default_factory=dict)  # dataset -> data.download
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (new name, earlier run)

    def run_dir(self, name: str) -> Path:
        return self.directory / "runs" / name

    def log_path(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def run_settings(self, name: str) -> list[str]:
        """The settings of run `name` over the base config: the shared overrides, the run's
        own, its name and its folder under SWEEP/runs."""
        settings = [*self.overrides, *self.manifest.runs[name]["overrides"], f"name={name}"]
        return [*settings, f"out_dir={self.directory / 'runs'}"]

    def run_config(self, name: str) -> TrainConfig:
        return load_config(self.config, self.run_settings(name))

    def add(self, runs: Iterable[RunSpec]) -> Iterator[str]:
        """The runs' names in the manifest, each once, as they are added: a run with the
        settings and seed of an earlier one is that one (recorded in `mapped`)."""
        seen = set()
        for run in runs:
            settings = {**self.settings[run.values], "seed": run.seed}
            name = self.manifest.add(run.name, run.overrides, identity(settings))
            if name != run.name:
                self.mapped.append((run.name, name))
            if name not in seen:
                seen.add(name)
                yield name

    def is_done(self, name: str) -> bool:
        status = self.manifest.runs[name]["status"]
        return status == "done" and self.can_resume(name)

    def can_resume(self, name: str) -> bool:
        return (self.run_dir(name) / "checkpoints" / "last.pt").is_file()

    def finished_outside(self, name: str) -> int | None:
        """The step of a run the manifest does not know as done but whose folder holds a
        finished run (trained by hand from a --list line); it is marked done."""
        if self.is_done(name) or not self.can_resume(name):
            return None
        step, finished = saved_step(self.run_dir(name))
        if not finished:
            return None
        self.manifest.finished_elsewhere(name, step)
        return step


def prepare(directory: Path, config: str | None, overrides: list[str], grid: dict) -> Sweep:
    """Checks the config of every grid point (a bad key or value stops here, before anything
    runs), then writes base.yaml; the caller holds the sweep folder's lock."""
    directory = directory.resolve()
    base = directory / BASE_CONFIG
    text = None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        text = composed_yaml(path)
    datasets, settings = {}, {}
    for prefix, values in points(grid).items():
        point = [f"{key}={value}" for key, value in values]
        try:
            cfg = load_config(config, [*overrides, *point, f"out_dir={directory}"])
        except UserError as err:
            raise UserError(f"runs {prefix or 'seed-N'}: {err}") from None
        settings[values] = cfg.to_dict()
        datasets[cfg.data.dataset] = datasets.get(cfg.data.dataset, False) or cfg.data.download
    existing = base.read_text() if base.is_file() else None
    if (directory / MANIFEST).is_file() and not _same_settings(existing, text):
        given = "none (flowrl's defaults)" if text is None else config
        raise UserError(
            f"{directory} holds a sweep of another base config than --config {given}: "
            "give this one another --name"
        )
    manifest = Manifest.open(directory, config=config, overrides=overrides, grid=grid)
    if text is not None and existing is None:
        write_atomic(base, text)
    config_copy = base if text is not None else None
    return Sweep(directory, config_copy, overrides, manifest, settings, datasets)


def _same_settings(first: str | None, second: str | None) -> bool:
    """Whether two base configs (YAML texts, None for flowrl's defaults) hold the same
    settings: comments and layout do not count."""
    if first is None or second is None:
        return first is second
    return yaml.safe_load(first) == yaml.safe_load(second)


def mapped_note(sweep: Sweep) -> str | None:
    """A line saying which runs of this grid are earlier runs under other names."""
    if not sweep.mapped:
        return None
    pairs = ", ".join(f"{new} = {old}" for new, old in sweep.mapped[:5])
    more = f" and {len(sweep.mapped) - 5} more" if len(sweep.mapped) > 5 else ""
    return (
        f"{len(sweep.mapped)} run(s) of this grid have the settings and seed of runs the sweep "
        f"holds under other names, which stand for them: {pairs}{more}"
    )


def ensure_datasets(sweep: Sweep) -> None:
    """Loads each dataset once before any run starts: a missing one stops the sweep here, a
    download happens once, and the quickstart set is collected once (as `flowrl train` would
    in every run at the same time)."""
    for dataset, download in sweep.datasets.items():
        load_or_collect(dataset, download=download)


def run_grid(
    directory: Path,
    config: str | None,
    overrides: list[str],
    grid: dict[str, list[str]],
    seeds: list[int],
    *,
    jobs: int = 1,
    threads: int = 1,
    progress: bool = True,
) -> tuple[Sweep, list[str], list[str]]:
    """Runs every run of `grid` x `seeds` that the sweep folder `directory` does not hold
    finished (locked meanwhile); returns the sweep, the runs' names and those that failed."""
    with FolderLock(directory, "sweep"):
        sweep = prepare(directory, config, overrides, grid)
        names = list(sweep.add(expand(grid, seeds)))
        sweep.manifest.save()
        if (note := mapped_note(sweep)) is not None:
            print(f"note: {note}", file=sys.stderr)
        if not all(sweep.is_done(name) for name in names):
            ensure_datasets(sweep)
        failed = execute(sweep, names, jobs=jobs, threads=threads, progress=progress)
    return sweep, names, failed


@dataclass
class _Running:
    name: str
    process: multiprocessing.Process


def execute(
    sweep: Sweep, names: list[str], *, jobs: int, threads: int, progress: bool = True
) -> list[str]:
    """Runs every unfinished run of `names`; returns the names of the runs that failed.

    A first SIGINT or SIGTERM is passed on to the running runs, which save and stop; the
    sweep waits for them and raises `Interrupted`. A second one stops the sweep at once.
    """
    todo = []
    for name in names:
        step = sweep.finished_outside(name)
        if step is not None:
            print(f"run {name} was finished outside the sweep (step {step})", file=sys.stderr)
        elif not sweep.is_done(name):
            todo.append(name)
    resumable = sum(sweep.can_resume(name) for name in todo)
    print(
        f"sweep {sweep.directory}: {len(names)} runs, {len(names) - len(todo)} finished before, "
        f"{len(todo)} to run ({resumable} resumed from last.pt), "
        f"{jobs} at a time with {threads} threads each",
        file=sys.stderr,
    )
    pending, running, failed = list(todo), [], []
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, file=sys.stderr)

    def reap() -> None:
        for item in [r for r in running if r.process.exitcode is not None]:
            running.remove(item)
            if _ended(sweep, item, stopped=stop.requested) != "done":
                failed.append(item.name)
                tqdm.write(_failure(sweep, item.name, item.process.exitcode), file=sys.stderr)
            bar.update(1)
            bar.set_postfix(done=bar.n - len(failed), running=len(running), failed=len(failed))

    with StopOnSignal() as stop:
        try:
            while (pending or running) and not stop.requested:
                while pending and len(running) < jobs and not stop.requested:
                    running.append(_start(sweep, pending.pop(0), threads))
                time.sleep(0.2)
                reap()
            if stop.requested:
                stopping = len(running)
                for item in running:  # one stop request each: they save and exit
                    os.kill(item.process.pid, stop.signum)
                while running:
                    time.sleep(0.2)
                    reap()
                name = signal.Signals(stop.signum).name
                raise Interrupted(
                    stop.signum,
                    f"stopped by {name}: {stopping} running run(s) saved where they were; "
                    "run the same command again to resume them",
                )
        finally:
            for item in running:  # a second signal, or an error of the sweep's own
                item.process.kill()
                item.process.join()
                _ended(sweep, item, stopped=True)
            bar.close()
    return failed


def _ended(sweep: Sweep, item: _Running, *, stopped: bool) -> str:
    """Records how a run's process ended in the manifest (`stopped`: the sweep stopped it);
    returns its status."""
    code = item.process.exitcode
    if code == 0:
        status, step = "done", None
    elif stopped or code in STOPPED:
        saved = saved_step(sweep.run_dir(item.name))
        status, step = "interrupted", saved[0] if saved else None
    else:
        status, step = "failed", None
    sweep.manifest.ended(item.name, status, code, step)
    return status


def _start(sweep: Sweep, name: str, threads: int) -> _Running:
    resume = sweep.can_resume(name)
    run_dir = sweep.run_dir(name)
    if not resume and run_dir.exists():  # a start that never checkpointed: begin again
        shutil.rmtree(run_dir)
    log_path = sweep.log_path(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"\n# run {name}{', resumed from last.pt' if resume else ''}\n")
    sweep.manifest.started(name, resumed=resume)
    process = start_child(
        from_config.run,
        sweep.run_config(name),
        resume=resume,
        progress=False,
        log=log_path,
        prog=f"run {name}",
        threads=threads,
        own_group=True,
    )
    return _Running(name, process)


def _failure(sweep: Sweep, name: str, code: int) -> str:
    lines = sweep.log_path(name).read_text(errors="replace").strip().splitlines()
    tail = "\n".join(f"    {line}" for line in lines[-5:])
    return f"run {name} failed (exit {code}), log {sweep.log_path(name)}:\n{tail}"
