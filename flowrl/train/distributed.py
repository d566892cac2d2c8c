"""torchrun support: the process group (nccl on CUDA, gloo on CPU) and a few rank helpers.

Outside torchrun nothing here starts anything: the helpers answer for a single process
(rank 0 of 1), so the same training code runs either way.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from flowrl.errors import UserError

T = TypeVar("T")


def launched() -> bool:
    """True in a process started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the process that logs, evaluates and writes checkpoints."""
    return rank() == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Joins torchrun's process group for the duration (nccl on CUDA, gloo on CPU).

    A no-op outside torchrun or when a group already exists (the caller owns that one).
    """
    if not launched() or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend)
    except (ValueError, RuntimeError) as err:
        where = ", ".join(f"{k}={os.environ.get(k)}" for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
        raise UserError(
            f"torchrun's environment is set ({where}) but the {backend} process group did not "
            f"start: {err}. Launch with torchrun, or unset RANK and WORLD_SIZE for one process."
        ) from None
    try:
        yield
        # Leave together, with no wrapper (DDP's reducer) still holding gloo work: a rank that
        # tears gloo down while another is in a collective, or whose gloo threads outlive the
        # group into interpreter exit, can abort ("terminate called without an active
        # exception", seen once here in a few dozen two-rank launches).
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the others (e.g. a download the others then reuse)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_verdict(check: Callable[[], T]) -> T | None:
    """Runs `check` on rank 0 only: its result there (None elsewhere), its UserError everywhere.

    Lets rank 0 alone do a check (e.g. lock the run folder) while every rank stops on failure.
    """
    result, error = None, None
    if is_main():
        try:
            result = check()
        except UserError as err:
            error = str(err)
    error = broadcast(error)
    if error is not None:
        raise UserError(error)
    return result


def gather(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None on the others."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Elementwise sums of `values` over all ranks (each rank gets them)."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def derived_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (e.g. seed, rank, step): distinct keys, unrelated seeds."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)
