"""How many CPU threads torch trains with (`threads`; 0: chosen here).

The models flowrl trains on CPUs are small: a step's matrix products are too short to share
among threads on cores that other work keeps busy, where torch's threads spin-wait for each
other (docs/training.md: 2 threads on 2 busy cores train slower than 1). So, unless told:
the `OMP_NUM_THREADS` a launcher set (a sweep sets CPU cores // jobs), else one thread when
other work keeps a core busy (a 1-minute load average of 1 or more), else torch's default.
"""

from __future__ import annotations

import os

import torch

# One core's worth of other runnable work on average: the cores are not this run's alone.
BUSY_LOAD = 1.0


def training_threads(setting: int) -> int:
    """The torch threads for a training run on the CPU whose `threads` setting is `setting`."""
    if setting > 0:
        return setting
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    if os.getloadavg()[0] >= BUSY_LOAD:
        return 1
    return torch.get_num_threads()


def set_training_threads(setting: int, device: torch.device) -> None:
    """Sets torch's CPU threads for training on `device` (the CPU only: a GPU run's threads
    only feed it)."""
    if device.type == "cpu":
        torch.set_num_threads(training_threads(setting))
