"""Batch samplers: K-step windows (DT training) and episode prefixes (long contexts).

Both gather rows of flat arrays of the raw data with one vectorised index per field; row N
of each array is the pad row (zeros), so pads cost nothing extra. Scaling the data for a
model is the agent's normaliser's job (`flowrl.agents.Normalizer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowrl.data.batch import Batch, PackedBatch
from flowrl.data.episodes import EpisodeDataset
from flowrl.errors import UserError


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise UserError(f"{name} must be positive, got {value}")


class _Table:
    """All episodes end to end, plus one pad row.

    Discrete actions become one-hot float vectors of size n (the pad row is all zeros), so a
    batch's `actions` always has shape (..., act_dim); the index is their argmax.
    """

    def __init__(self, dataset: EpisodeDataset) -> None:
        self.lengths = dataset.lengths
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        self.num_steps = int(self.ends[-1])
        eps = dataset.episodes

        def stack(arrays: list[np.ndarray]) -> np.ndarray:
            flat = np.concatenate(arrays)
            return np.concatenate([flat, np.zeros_like(flat[:1])])

        self.states = stack([ep.observations for ep in eps])
        if dataset.discrete_actions is None:
            self.actions = stack([ep.actions for ep in eps])
        else:
            one_hot = np.eye(dataset.discrete_actions, dtype=np.float32)
            self.actions = stack([one_hot[ep.actions] for ep in eps])
        self.returns_to_go = stack([ep.returns_to_go for ep in eps])

    def gather(
        self,
        rows: np.ndarray,
        steps: np.ndarray,
        valid: np.ndarray,
        cls: type[Batch] = Batch,
        **extra: np.ndarray,
    ) -> Batch:
        """Batch of `rows` (pad row where not `valid`); `steps` are in-episode indices."""
        rows = np.where(valid, rows, self.num_steps)
        return cls(
            states=self.states[rows],
            actions=self.actions[rows],
            returns_to_go=self.returns_to_go[rows],
            timesteps=np.where(valid, steps, 0).astype(np.int64),
            valid=valid,
            **extra,
        )


class _Sampler:
    """Seeded generator with a resumable state."""

    def __init__(self, dataset: EpisodeDataset, batch_size: int, seed: int):
        _check_positive(batch_size=batch_size)
        self.batch_size = int(batch_size)
        self.table = _Table(dataset)
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """Generator state: `load_state_dict` of it makes the next batches repeat exactly."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def reseed(self, seed: int) -> None:
        """Restarts the generator from `seed`, as if the sampler had been built with it."""
        self.rng = np.random.default_rng(seed)


class WindowSampler(_Sampler):
    """Windows of `context_len` steps starting anywhere in an episode, right-padded.

    The start is a uniform draw over all steps of the dataset, so episodes come in
    proportion to their length and every start within an episode is equally likely.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        context_len: int,
        batch_size: int,
        seed: int,
    ) -> None:
        _check_positive(context_len=context_len)
        super().__init__(dataset, batch_size, seed)
        self.context_len = int(context_len)

    def draw(self) -> np.ndarray:
        """The next batch's first rows, (B,) int64 indices into the flat table."""
        return self.rng.integers(0, self.table.num_steps, size=self.batch_size)

    def sample(self) -> Batch[np.ndarray]:
        t = self.table
        first = self.draw()
        episode = np.searchsorted(t.ends, first, side="right")
        steps = (first - t.starts[episode])[:, None] + np.arange(self.context_len)
        valid = steps < t.lengths[episode][:, None]
        return t.gather(t.starts[episode][:, None] + steps, steps, valid)


class EpisodeSampler(_Sampler):
    """Episode prefixes: from an episode's first step, up to `max_len` steps.

    Episodes are drawn uniformly: each drawn episode brings all its steps (up to `max_len`),
    so every step of the dataset is equally likely to be trained on.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        max_len: int,
        batch_size: int,
        seed: int,
    ) -> None:
        _check_positive(max_len=max_len)
        super().__init__(dataset, batch_size, seed)
        self.max_len = int(max_len)

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch's episodes (B,) and their prefix lengths (B,), int64."""
        episode = self.rng.integers(0, len(self.table.lengths), size=self.batch_size)
        return episode, np.minimum(self.table.lengths[episode], self.max_len)

    def sample(self) -> Batch[np.ndarray]:
        """Prefixes right-padded to the longest in the batch: arrays (B, L, ...)."""
        t = self.table
        episode, lengths = self.draw()
        steps = np.broadcast_to(np.arange(lengths.max()), (self.batch_size, lengths.max()))
        valid = steps < lengths[:, None]
        return t.gather(t.starts[episode][:, None] + steps, steps, valid)

    def sample_packed(self) -> PackedBatch[np.ndarray]:
        """The same draw as `sample`, packed without pads: arrays (1, total, ...) and offsets."""
        t = self.table
        episode, lengths = self.draw()
        cu_seqlens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        steps = np.arange(cu_seqlens[-1]) - np.repeat(cu_seqlens[:-1], lengths)
        rows = np.repeat(t.starts[episode], lengths) + steps
        valid = np.ones(len(rows), dtype=bool)
        return t.gather(rows[None], steps[None], valid[None], PackedBatch, cu_seqlens=cu_seqlens)
