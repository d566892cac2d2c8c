"""Sequences packed end to end (flash-attn's `cu_seqlens`) and their right-padded batch.

A model with several attention layers builds `PackedSequences` once per forward and hands
it to every layer: the offsets are checked and the token index is built once (one
host-device sync), and each layer only scatters into and gathers from the padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedSequences:
    """Offsets of n sequences packed along one row of `total` tokens, and their layout."""

    cu_seqlens: Tensor  # (n + 1,) int64 offsets [0, l1, l1 + l2, ...]
    lengths: Tensor  # (n,) int64
    sequence: Tensor  # (total,) which sequence each packed token belongs to
    position: Tensor  # (total,) its 0-based position inside that sequence
    longest: int
    offsets: tuple[int, ...]  # cu_seqlens on the host, read once

    @classmethod
    def from_offsets(cls, cu_seqlens: Tensor, total: int) -> PackedSequences:
        """Checks flash-attn style offsets for a packed row of `total` tokens."""
        if (
            not isinstance(cu_seqlens, Tensor)
            or cu_seqlens.dim() != 1
            or cu_seqlens.dtype.is_floating_point
        ):
            raise ValueError(
                "cu_seqlens must be a 1-D integer tensor of offsets [0, l1, l1+l2, ...]"
            )
        if cu_seqlens.numel() < 2:
            raise ValueError("cu_seqlens must hold at least two offsets (one sequence)")
        offsets = cu_seqlens.tolist()
        if offsets[0] != 0 or offsets[-1] != total:
            raise ValueError(
                f"cu_seqlens must run from 0 to the packed length {total}, "
                f"got {offsets[0]}..{offsets[-1]}"
            )
        lengths_list = [b - a for a, b in pairwise(offsets)]
        if min(lengths_list) <= 0:
            raise ValueError(f"cu_seqlens must be strictly increasing, got {offsets}")
        device = cu_seqlens.device
        lengths = torch.tensor(lengths_list, device=device, dtype=torch.long)
        sequence = torch.repeat_interleave(
            torch.arange(len(lengths_list), device=device), lengths, output_size=total
        )
        starts = cu_seqlens.to(torch.long)[:-1]
        position = torch.arange(total, device=device) - starts[sequence]
        return cls(
            cu_seqlens.to(torch.long),
            lengths,
            sequence,
            position,
            max(lengths_list),
            tuple(offsets),
        )

    @property
    def total(self) -> int:
        return self.sequence.numel()

    @property
    def num_sequences(self) -> int:
        return self.lengths.numel()

    def pad(self, x: Tensor) -> Tensor:
        """(1, total, *rest) packed -> (n, longest, *rest), zeros after each sequence's end."""
        padded = x.new_zeros(self.num_sequences, self.longest, *x.shape[2:])
        padded[self.sequence, self.position] = x[0]
        return padded

    def unpad(self, x: Tensor) -> Tensor:
        """(n, longest, *rest) right-padded -> (1, total, *rest) packed."""
        return x[self.sequence, self.position].unsqueeze(0)
