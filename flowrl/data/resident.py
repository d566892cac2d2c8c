"""Samplers whose dataset lives on the training device: batches built there, no copies.

The flat table of `flowrl.data.sampler` (all episodes end to end plus one pad row) is moved
to the device once; each batch is then index arithmetic on the device (windows, pads, valid flags,
returns-to-go, timesteps) and one gather per field. The random draws stay on the host, made
by the host samplers' own generators with the same calls: a seed gives exactly the batches
of `WindowSampler` / `EpisodeSampler`, and `state_dict` is theirs (a run may switch between
the two kinds on resume). Per batch, only the B drawn indices travel to the device, through
pinned memory without blocking the host; the host knows every shape, so nothing is read back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowrl.data.batch import Batch, PackedBatch
from flowrl.data.episodes import EpisodeDataset
from flowrl.data.sampler import EpisodeSampler, WindowSampler


class _ResidentTable:
    """The host sampler's table as tensors on `device`."""

    def __init__(self, sampler: WindowSampler | EpisodeSampler, device: torch.device) -> None:
        table = sampler.table
        self.device = device
        self.pad_row = table.num_steps
        self.states = torch.from_numpy(table.states).to(device)
        self.actions = torch.from_numpy(table.actions).to(device)
        self.returns_to_go = torch.from_numpy(table.returns_to_go).to(device)
        self.starts = torch.from_numpy(table.starts).to(device)
        self.ends = torch.from_numpy(table.ends).to(device)
        self.lengths = torch.from_numpy(table.lengths).to(device)

    def upload(self, indices: np.ndarray) -> Tensor:
        """Host int64 indices on the device; a CUDA copy goes through pinned memory and does
        not wait for the device."""
        tensor = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def gather(
        self,
        rows: Tensor,
        steps: Tensor,
        valid: Tensor,
        cls: type[Batch] = Batch,
        **extra: Tensor,
    ) -> Batch[Tensor]:
        """Batch of `rows` (pad row where not `valid`); `steps` are in-episode indices."""
        rows = torch.where(valid, rows, self.pad_row)
        return cls(
            states=self.states[rows],
            actions=self.actions[rows],
            returns_to_go=self.returns_to_go[rows],
            timesteps=torch.where(valid, steps, 0),
            valid=valid,
            **extra,
        )


class _ResidentSampler:
    """Draws with a host sampler (`draws`), builds on the device; its state is theirs."""

    draws: WindowSampler | EpisodeSampler

    def __init__(self, draws: WindowSampler | EpisodeSampler, device: str | torch.device):
        self.draws = draws
        self.batch_size = draws.batch_size
        self.data = _ResidentTable(draws, torch.device(device))

    def state_dict(self) -> dict[str, Any]:
        return self.draws.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws.load_state_dict(state)

    def reseed(self, seed: int) -> None:
        self.draws.reseed(seed)


class ResidentWindowSampler(_ResidentSampler):
    """`WindowSampler`'s batches, as tensors built on `device`."""

    draws: WindowSampler

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        context_len: int,
        batch_size: int,
        seed: int,
        device: str | torch.device,
    ) -> None:
        draws = WindowSampler(dataset, context_len=context_len, batch_size=batch_size, seed=seed)
        super().__init__(draws, device)
        self.offsets = torch.arange(draws.context_len, device=self.data.device)

    def sample(self) -> Batch[Tensor]:
        d = self.data
        first = d.upload(self.draws.draw())
        episode = torch.searchsorted(d.ends, first, right=True)
        start = d.starts[episode]
        steps = (first - start)[:, None] + self.offsets
        valid = steps < d.lengths[episode][:, None]
        return d.gather(start[:, None] + steps, steps, valid)


class ResidentEpisodeSampler(_ResidentSampler):
    """`EpisodeSampler`'s batches (padded or packed), as tensors built on `device`."""

    draws: EpisodeSampler

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        max_len: int,
        batch_size: int,
        seed: int,
        device: str | torch.device,
    ) -> None:
        draws = EpisodeSampler(dataset, max_len=max_len, batch_size=batch_size, seed=seed)
        super().__init__(draws, device)

    def sample(self) -> Batch[Tensor]:
        """Prefixes right-padded to the longest in the batch: tensors (B, L, ...)."""
        d = self.data
        episode, lengths = self.draws.draw()
        longest = int(lengths.max())
        both = d.upload(np.concatenate([episode, lengths]))
        episode_t, lengths_t = both[: self.batch_size], both[self.batch_size :]
        steps = torch.arange(longest, device=d.device).expand(self.batch_size, longest)
        valid = steps < lengths_t[:, None]
        return d.gather(d.starts[episode_t][:, None] + steps, steps, valid)

    def sample_packed(self) -> PackedBatch[Tensor]:
        """The same draw as `sample`, packed without pads: tensors (1, total, ...) and
        offsets (n + 1,)."""
        d = self.data
        episode, lengths = self.draws.draw()
        cu_seqlens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(cu_seqlens[-1])
        both = d.upload(np.concatenate([episode, cu_seqlens]))
        episode_t, cu_t = both[: self.batch_size], both[self.batch_size :]
        position = torch.arange(total, device=d.device)
        sequence = torch.searchsorted(cu_t[1:], position, right=True)
        steps = position - cu_t[sequence]
        rows = d.starts[episode_t][sequence] + steps
        valid = torch.ones((1, total), dtype=torch.bool, device=d.device)
        return d.gather(rows[None], steps[None], valid, PackedBatch, cu_seqlens=cu_t)
