"""The device a user names (`device=`, `--device`), checked against this machine."""

from __future__ import annotations

import re

import torch

from flowrl.errors import UserError

_DEVICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def parse_device(name: str, setting: str = "device") -> torch.device:
    """`name` as a torch device: auto (CUDA if this machine has it, else the CPU), cpu, cuda
    or cuda:N for one of this machine's CUDA devices. A UserError naming `setting` and the
    value otherwise (`banana`, `cuda` without CUDA, `cuda:3` on a machine with one GPU)."""
    match = _DEVICE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise UserError(f"{setting}={name!r}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{setting}={name!r} but CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if int(match[1] or 0) >= count:
            raise UserError(f"{setting}={name!r} but this machine has {count} CUDA devices")
    return torch.device(name)
