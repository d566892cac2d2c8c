"""Time limits for the tests' subprocesses, generous for a loaded machine.

A limit only has to stop a process that hangs; it must never stop one that is slow because
other work shares the cores (a fresh clone's tests once took 92 minutes beside other jobs,
and the README example's limit stopped it). So each limit, sized for an idle machine with a
margin, is stretched by how much busier than idle the machine is when the process starts:
the 1-minute load average per core, at least 1.
"""

from __future__ import annotations

import os


def scaled(seconds: float) -> float:
    """`seconds` (enough on an idle machine) times the load per core, at least 1."""
    load_per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, load_per_core)
