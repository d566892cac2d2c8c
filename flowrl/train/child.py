"""Library calls in a child process of their own: each run of a sweep, each sweep of a
benchmark, where a run must be isolated or signals must reach it alone.

A child is a fresh Python (multiprocessing's spawn: it shares nothing with its parent but
the call's arguments). Its output goes to a log file, and it exits as a `flowrl` command
does: 0, 2 for a UserError, 128 + the signal for a run that saved and stopped on one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowrl.errors import exit_status, show_warnings_in_one_line
from flowrl.train.interrupt import StopOnSignal

SPAWN = multiprocessing.get_context("spawn")


def start_child(
    call: Callable[..., Any],
    *args: Any,
    log: Path,
    prog: str,
    threads: int | None = None,
    own_group: bool = False,
    **kwargs: Any,
) -> multiprocessing.Process:
    """Starts `call(*args, **kwargs)` in a child process, its stdout and stderr appended to
    `log`, its errors as one line `prog: ...`. `threads`: torch's threads there (and
    OMP_NUM_THREADS, MKL_NUM_THREADS for its own children). `own_group`: a process group of
    its own (a terminal's Ctrl-C reaches the parent alone, which passes it on) and SIGTERM
    when the parent dies, even by SIGKILL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    process = SPAWN.Process(
        target=_child_main,
        args=(call, args, kwargs),
        kwargs={
            "log": str(log),
            "prog": prog,
            "threads": threads,
            "parent": os.getpid() if own_group else None,
        },
    )
    process.start()
    return process


def join_passing_sigterm(process: multiprocessing.Process, stop: StopOnSignal) -> None:
    """Waits for a child in this process's group, from any thread. A SIGTERM that `stop`
    (entered in the main thread) caught meanwhile is passed on to it (a terminal's Ctrl-C
    reaches both already), so that it stops as it would on its own instead of running on
    without a parent."""
    passed = False
    while process.exitcode is None:
        process.join(0.2)
        if stop.signum == signal.SIGTERM and not passed:
            os.kill(process.pid, signal.SIGTERM)
            passed = True


def _child_main(
    call: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
    *,
    log: str,
    prog: str,
    threads: int | None,
    parent: int | None,
) -> None:
    if parent is not None:
        _own_group_dying_with(parent)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
        stream.reconfigure(line_buffering=True)
    os.close(fd)
    if threads is not None:
        import torch

        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    show_warnings_in_one_line(prog)

    def calling() -> None:
        call(*args, **kwargs)

    sys.exit(exit_status(calling, prog))


def _own_group_dying_with(parent: int) -> None:
    """A process group of its own, and SIGTERM when `parent` dies (PR_SET_PDEATHSIG)."""
    os.setpgid(0, 0)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)
