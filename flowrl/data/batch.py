"""Training batches: numpy arrays from the samplers, tensors for the model."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

A = TypeVar("A")


@dataclass
class Batch(Generic[A]):
    """B windows of K steps, right-padded; pads are 0 and `valid` is False there."""

    states: A  # (B, K, obs_dim) float32, raw observations
    actions: A  # (B, K, act_dim) float32, raw actions; discrete actions one-hot (act_dim = n)
    returns_to_go: A  # (B, K) float32, raw undiscounted returns-to-go
    timesteps: A  # (B, K) int64, index of the step in its episode
    valid: A  # (B, K) bool, True on real steps, False on padding

    def to_torch(self, device: str | torch.device = "cpu") -> Batch[torch.Tensor]:
        """The same batch as tensors on `device`. CUDA copies go through pinned memory and
        do not block the host: the next batch is built while this one is in flight."""
        import torch

        device = torch.device(device)

        def move(array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if device.type != "cuda":
                return tensor.to(device)
            return tensor.pin_memory().to(device, non_blocking=True)

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})


@dataclass
class PackedBatch(Batch[A]):
    """Variable-length sequences packed into one row: arrays (1, total, ...), no pads."""

    cu_seqlens: A  # (n + 1,) int64 offsets [0, l1, l1 + l2, ...] in timesteps
