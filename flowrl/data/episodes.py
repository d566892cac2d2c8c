"""The in-memory episode store every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flowrl.data.reference import normalized_score
from flowrl.errors import UserError

STD_FLOOR = 1e-6


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted sum of rewards from each step to the end of its episode (float32)."""
    return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)


@dataclass
class Episode:
    """One episode of T steps: `observations[t]` is the state `actions[t]` was taken in."""

    observations: np.ndarray  # (T, obs_dim) float32
    actions: np.ndarray  # (T, act_dim) float32
    rewards: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    returns_to_go: np.ndarray = field(init=False)  # (T,) float32

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        steps = len(self.rewards)
        if steps == 0:
            raise ValueError("an episode needs at least one step")
        if self.observations.ndim != 2 or self.actions.ndim != 2 or self.rewards.ndim != 1:
            raise ValueError(
                "expected observations (T, obs_dim), actions (T, act_dim), rewards (T,); got "
                f"{self.observations.shape}, {self.actions.shape}, {self.rewards.shape}"
            )
        lengths = {
            len(a) for a in (self.observations, self.actions, self.terminations, self.truncations)
        }
        if lengths != {steps}:
            raise ValueError(f"episode arrays differ in length: {sorted(lengths | {steps})}")
        self.returns_to_go = returns_to_go(self.rewards)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        """Undiscounted return of the whole episode."""
        return float(self.returns_to_go[0])


class EpisodeDataset:
    """Episodes plus what training and evaluation need to know about them."""

    def __init__(
        self,
        name: str,
        episodes: list[Episode],
        *,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
        env_id: str | None = None,
    ) -> None:
        if not episodes:
            raise UserError(f"dataset {name!r} holds no episodes")
        dims = {(ep.observations.shape[1], ep.actions.shape[1]) for ep in episodes}
        if len(dims) != 1:
            raise UserError(f"dataset {name!r} mixes (obs_dim, act_dim) shapes: {sorted(dims)}")
        self.name = name
        self.episodes = episodes
        self.ref_min_score = None if ref_min_score is None else float(ref_min_score)
        self.ref_max_score = None if ref_max_score is None else float(ref_max_score)
        self.env_id = env_id
        states = np.concatenate([ep.observations for ep in episodes])
        self.obs_mean = states.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = states.std(axis=0, dtype=np.float64)
        self.obs_std = np.maximum(std, STD_FLOOR).astype(np.float32)
        self.returns = np.array([ep.total_return for ep in episodes], dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"EpisodeDataset({self.name!r}, episodes={self.num_episodes}, "
            f"steps={self.num_steps}, env_id={self.env_id!r})"
        )

    @property
    def obs_dim(self) -> int:
        return int(self.episodes[0].observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.episodes[0].actions.shape[1])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        return int(sum(len(ep) for ep in self.episodes))

    @property
    def lengths(self) -> np.ndarray:
        """Steps per episode (int64)."""
        return np.array([len(ep) for ep in self.episodes], dtype=np.int64)

    def normalized_score(self, returns: np.ndarray | float) -> np.ndarray | None:
        """D4RL-style score of `returns` (`flowrl.data.reference.normalized_score`); None
        when the dataset has no reference returns."""
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    def stats(self) -> dict:
        """Summary for `flowrl datasets show` (JSON-serialisable)."""
        stats = {
            "name": self.name,
            "env_id": self.env_id,
            "episodes": self.num_episodes,
            "steps": self.num_steps,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "return_min": float(self.returns.min()),
            "return_mean": float(self.returns.mean()),
            "return_max": float(self.returns.max()),
            "length_min": int(self.lengths.min()),
            "length_max": int(self.lengths.max()),
            "terminated_episodes": int(sum(bool(ep.terminations[-1]) for ep in self.episodes)),
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "obs_mean": self.obs_mean.tolist(),
            "obs_std": self.obs_std.tolist(),
        }
        score = self.normalized_score(self.returns.mean())
        stats["normalized_return_mean"] = None if score is None else float(score)
        return stats
