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
    """B windows of K steps, right-padded; pads are 0 and `mask` is False there."""

    states: A  # (B, K, obs_dim) float32, normalised by the dataset's mean and std
    actions: A  # (B, K, act_dim) float32; discrete actions one-hot (act_dim = n, pads all 0)
    rewards: A  # (B, K) float32
    returns_to_go: A  # (B, K) float32, divided by the return scale
    timesteps: A  # (B, K) int64, index of the step in its episode
    mask: A  # (B, K) bool, True on real steps

    def to_torch(self, device: str | torch.device = "cpu") -> Batch[torch.Tensor]:
        """The same batch as tensors on `device`."""
        import torch

        return replace(
            self,
            **{
                f.name: torch.from_numpy(np.ascontiguousarray(getattr(self, f.name))).to(device)
                for f in fields(self)
            },
        )


@dataclass
class PackedBatch(Batch[A]):
    """Variable-length sequences packed into one row: arrays (1, total, ...), no pads."""

    cu_seqlens: A  # (n + 1,) int64 offsets [0, l1, l1 + l2, ...] in timesteps
