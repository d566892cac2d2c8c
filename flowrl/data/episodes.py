"""The in-memory episode store every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowrl.data.reference import normalized_score
from flowrl.envs.record import EnvRecord
from flowrl.errors import UserError

STD_FLOOR = 1e-6


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted sum of rewards from each step to the end of its episode (float32)."""
    return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)


@dataclass
class Episode:
    """One episode of T steps: `observations[t]` is the state `actions[t]` was taken in."""

    observations: np.ndarray  # (T, obs_dim) float32
    actions: np.ndarray  # (T, act_dim) float32, or (T,) int64 indices for discrete actions
    rewards: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    returns_to_go: np.ndarray = field(init=False)  # (T,) float32

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        actions = np.asarray(self.actions)
        discrete = actions.ndim == 1 and np.issubdtype(actions.dtype, np.integer)
        self.actions = actions.astype(np.int64 if discrete else np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        steps = len(self.rewards)
        if steps == 0:
            raise ValueError("an episode needs at least one step")
        if (
            self.observations.ndim != 2
            or self.rewards.ndim != 1
            or not (discrete or actions.ndim == 2)
        ):
            raise ValueError(
                "expected observations (T, obs_dim), actions (T, act_dim) or integer (T,), "
                "rewards (T,); got "
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

    @property
    def discrete(self) -> bool:
        """Whether the actions are integer indices (a Discrete action space)."""
        return self.actions.ndim == 1


def _check_actions(name: str, episodes: list[Episode], discrete_actions: int | None) -> None:
    """Discrete datasets hold indices in [0, n); continuous ones hold float vectors."""
    if discrete_actions is None:
        if episodes[0].discrete:
            raise UserError(
                f"dataset {name!r} holds integer actions but names no discrete action space"
            )
        return
    if discrete_actions < 1:
        raise UserError(f"dataset {name!r}: discrete_actions={discrete_actions}, expected >= 1")
    if not episodes[0].discrete:
        raise UserError(
            f"dataset {name!r} has a Discrete({discrete_actions}) action space but its actions "
            f"have shape {episodes[0].actions.shape}, expected integer indices (T,)"
        )
    for i, ep in enumerate(episodes):
        if ep.actions.min() < 0 or ep.actions.max() >= discrete_actions:
            raise UserError(
                f"dataset {name!r}: episode {i} holds actions in [{ep.actions.min()}, "
                f"{ep.actions.max()}], outside Discrete({discrete_actions})"
            )


class EpisodeDataset:
    """Episodes plus what training and evaluation need to know about them.

    `discrete_actions` is the number of actions of a Discrete action space (the episodes then
    hold integer indices), None for continuous actions. `env_kwargs` are the keyword arguments
    the data was collected with (from the Minari env spec): evaluation makes its envs with them.
    """

    def __init__(
        self,
        name: str,
        episodes: list[Episode],
        *,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        discrete_actions: int | None = None,
    ) -> None:
        if not episodes:
            raise UserError(f"dataset {name!r} holds no episodes")
        dims = {(ep.observations.shape[1], ep.actions.shape[1:]) for ep in episodes}
        if len(dims) != 1:
            raise UserError(f"dataset {name!r} mixes (obs_dim, action) shapes: {sorted(dims)}")
        obs_dim, action_shape = next(iter(dims))
        if obs_dim == 0 or 0 in action_shape:
            raise UserError(f"dataset {name!r}: observations and actions need at least one value")
        _check_actions(name, episodes, discrete_actions)
        self.name = name
        self.episodes = episodes
        self.ref_min_score = None if ref_min_score is None else float(ref_min_score)
        self.ref_max_score = None if ref_max_score is None else float(ref_max_score)
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.discrete_actions = None if discrete_actions is None else int(discrete_actions)
        states = np.concatenate([ep.observations for ep in episodes])
        self.obs_mean = states.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = states.std(axis=0, dtype=np.float64)
        self.obs_std = np.maximum(std, STD_FLOOR).astype(np.float32)
        self.returns = np.array([ep.total_return for ep in episodes], dtype=np.float64)

    @property
    def env(self) -> EnvRecord | None:
        """The env the episodes came from, with the keyword arguments they were collected
        with; None when the data names no env."""
        return EnvRecord(self.env_id, self.env_kwargs) if self.env_id else None

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
        """Size of an action vector: for discrete actions the number of actions (one-hot)."""
        if self.discrete_actions is not None:
            return self.discrete_actions
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
            "env_kwargs": self.env_kwargs,
            "discrete_actions": self.discrete_actions,
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
