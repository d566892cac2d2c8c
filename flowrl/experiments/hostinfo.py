"""What a benchmark records about the machine it ran on and the command that ran it."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name where Linux says it, else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(torch_threads: int | None = None, device: str = "cpu") -> dict:
    """The machine and the run, for a results JSON: CPU model, logical cores, torch threads
    (`torch_threads`, where the timed work runs with another count than this process's),
    torch version, device, and the exact command line."""
    import torch

    return {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch_threads is None else torch_threads,
        "torch": torch.__version__,
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "command": shlex.join([sys.executable, *sys.argv]),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def machine_line(info: dict) -> str:
    """One line for a table's heading: CPU model, cores, threads, torch, device."""
    return (
        f"{info['cpu']}, {info['logical_cores']} logical cores, "
        f"{info['torch_threads']} torch thread(s), torch {info['torch']}, {info['device']}"
    )
