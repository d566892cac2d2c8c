"""Run folders: one run owns `out_dir/name` at a time, through an exclusive lock (a sweep
owns its folder the same way: `FolderLock`).

The lock is an `fcntl.flock` on `run_dir/.lock`, held for the whole run and released by the
OS when the process ends, however it ends; the file holds the holder's PID for the message
a second run gets. A new run does not write into a folder that holds an earlier run's
files: it needs `resume` (continue it) or `overwrite` (empty it first).

A run marks the folder it starts in with `.flowrl-run`. `overwrite` empties only a run
folder: one with that marker or, made before the marker existed, one holding a
`config.yaml` with `metrics.jsonl` or `checkpoints/` beside it. Any other folder that holds
something is refused, never emptied; run names are plain (`check_name`), so the folder is
always a child of `out_dir`, never `out_dir` itself or above it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from flowrl.errors import UserError
from flowrl.train import distributed

LOCK_NAME = ".lock"
MARKER_NAME = ".flowrl-run"  # in every folder a run started in: a folder --overwrite may empty


def _os_error(what: str, path: Path, err: OSError) -> UserError:
    return UserError(f"cannot {what} {path}: {err.strerror or err}")


class FolderLock:
    """A folder locked for this process from `acquire` to `release` (or as a context
    manager); `owner` (run, sweep) names what holds it in the message a second one gets."""

    bookkeeping: tuple[str, ...] = (LOCK_NAME,)  # files that are not the folder's contents

    def __init__(self, path: Path, owner: str = "run") -> None:
        self.path, self.owner = path, owner
        self._lock_file = None

    def acquire(self) -> FolderLock:
        """Creates and locks the folder; a UserError naming the holder's PID if another
        process holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock_file = (self.path / LOCK_NAME).open("a+")
        except OSError as err:
            raise _os_error(f"create the {self.owner} folder", self.path, err) from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise UserError(
                f"{self.owner} folder {self.path} is in use by another flowrl {self.owner} "
                f"(PID {holder}); wait for it to end or pick another name"
            ) from None
        self._lock_file = lock_file
        try:
            lock_file.truncate(0)
            lock_file.write(f"{os.getpid()}\n")
            lock_file.flush()
        except OSError as err:
            self.release()
            raise _os_error(f"write to the {self.owner} folder", self.path, err) from None
        return self

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def contents(self) -> list[Path]:
        """Everything in the folder but the lock file (and a run folder's marker)."""
        return [p for p in self.path.iterdir() if p.name not in self.bookkeeping]

    def release(self) -> None:
        """Unlocks; a folder that got nothing but the lock file (and marker) is removed."""
        if self._lock_file is None:
            return
        if self.path.is_dir() and not self.contents():
            for name in self.bookkeeping:
                (self.path / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # something appeared meanwhile: keep it
                self.path.rmdir()
        self._lock_file.close()  # closing the file releases the flock
        self._lock_file = None


class RunDir(FolderLock):
    """The folder of one run, locked for this process from `acquire` to `release`."""

    bookkeeping = (LOCK_NAME, MARKER_NAME)

    def acquire(self, *, resume: bool = False, overwrite: bool = False) -> RunDir:
        """Creates and locks the folder; a UserError if another run holds it or it is taken."""
        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other: continue or start over")
        made_lock = not (self.path / LOCK_NAME).exists()
        super().acquire()
        try:
            self._claim(resume=resume, overwrite=overwrite)
        except OSError as err:
            self.release()
            raise _os_error("write to the run folder", self.path, err) from None
        except UserError:
            if made_lock and not is_run_folder(self.path):  # no trace in a folder not ours
                (self.path / LOCK_NAME).unlink(missing_ok=True)
            self.release()
            raise
        return self

    def _claim(self, *, resume: bool, overwrite: bool) -> None:
        earlier = self.contents()
        check_claim(self.path, earlier, resume=resume, overwrite=overwrite)
        if overwrite:
            for entry in earlier:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        if overwrite or not earlier:  # a folder this run starts: marked as a run's
            (self.path / MARKER_NAME).write_text("a flowrl run folder: --overwrite may empty it\n")
        remove_stale_temporaries(self.path)


def check_claim(path: Path, earlier: list[Path], *, resume: bool, overwrite: bool) -> None:
    """A UserError unless a run (new, `resume` or `overwrite`) may take the folder `path`
    that holds `earlier` (its contents but the bookkeeping files). Reads only."""
    names = ", ".join(sorted(p.name for p in earlier)[:4])
    if earlier and not resume and not is_run_folder(path):
        empties = f"--overwrite empties only a folder a flowrl run made ({MARKER_NAME}): "
        raise UserError(
            f"{empties if overwrite else ''}folder {path} holds files not made by "
            f"flowrl ({names}), left as they are; pick another name or out_dir"
        )
    if earlier and not (resume or overwrite):
        if (path / "checkpoints" / "last.pt").is_file():
            advice = "continue it with --resume, start over with --overwrite"
        else:  # e.g. a run that failed at step 1
            advice = (
                "it stopped before its first checkpoint, so there is nothing to --resume: "
                "start it over with --overwrite"
            )
        raise UserError(
            f"run folder {path} already holds a run ({names}): {advice}, or pick another name"
        )


def check_run_dir_free(path: Path, *, resume: bool, overwrite: bool) -> None:
    """What `RunDir.acquire` checks, writing nothing (`flowrl train --dry-run`): the folder
    can be made where it goes, no other run holds its lock, and the run may take it."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other: continue or start over")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise UserError(f"cannot create the run folder {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot create the run folder {path}: {existing} is not writable")
    if existing != path:
        return
    lock = path / LOCK_NAME
    if lock.is_file():
        with lock.open() as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = held.read().strip() or "unknown"
                raise UserError(
                    f"run folder {path} is in use by another flowrl run (PID {holder}); "
                    "wait for it to end or pick another name"
                ) from None
            fcntl.flock(held, fcntl.LOCK_UN)
    earlier = [p for p in path.iterdir() if p.name not in RunDir.bookkeeping]
    check_claim(path, earlier, resume=resume, overwrite=overwrite)


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a folder a flowrl run made: it holds the marker, or (a run from
    before the marker) a `config.yaml` with `metrics.jsonl` or `checkpoints/` beside it."""
    if (path / MARKER_NAME).is_file():
        return True
    earlier_run = (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir()
    return (path / "config.yaml").is_file() and earlier_run


def claim_run_dir(path: Path, *, resume: bool, overwrite: bool) -> RunDir | None:
    """Rank 0 locks and claims the folder (None on other ranks); its errors stop every rank."""
    return distributed.main_verdict(
        lambda: RunDir(path).acquire(resume=resume, overwrite=overwrite)
    )


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Deletes `.NAME.PID.tmp` files a killed save left; only safe while holding the lock."""
    stale = [p for p in run_dir.rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink()
    return stale
