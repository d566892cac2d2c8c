"""The data contract between raw data and a model: how observations, actions and
returns-to-go are scaled on the way in, and actions on the way out.

Fitted once on a training dataset, saved with the agent, and the one place both the
training loss and the acting policy go through. Samplers and environments speak raw data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowrl.data import EpisodeDataset
from flowrl.errors import UserError


@dataclass
class Normalizer:
    """Observations are standardised, actions divided by their per-dimension largest
    magnitude in the data (the model's tanh head acts in [-1, 1]), returns-to-go divided
    by `return_scale`. Tensors are float32 on one device (`to`).

    Discrete actions (`discrete`) are one-hot vectors in the model and are not scaled
    (`action_scale` is all ones); the env gets the index of the chosen action. Observations
    that a model reads as raw codes (the grid state encoder) get mean 0 and std 1: they pass
    unchanged.
    """

    obs_mean: Tensor  # (state_dim,)
    obs_std: Tensor  # (state_dim,), floored above 0
    action_scale: Tensor  # (act_dim,), the env gets model actions times this
    return_scale: float
    discrete: bool = False

    @classmethod
    def fit(
        cls, dataset: EpisodeDataset, return_scale: float, *, standardize_states: bool = True
    ) -> Normalizer:
        """The dataset's observation statistics (or, without `standardize_states`, mean 0 and
        std 1) and action ranges."""
        discrete = dataset.discrete_actions is not None
        if discrete:
            action_scale = np.ones(dataset.act_dim)
        else:
            largest = np.abs(np.concatenate([ep.actions for ep in dataset.episodes])).max(0)
            action_scale = np.where(largest > 0, largest, 1.0)
        obs_mean, obs_std = dataset.obs_mean, dataset.obs_std
        if not standardize_states:
            obs_mean, obs_std = np.zeros_like(obs_mean), np.ones_like(obs_std)
        return cls.from_arrays(obs_mean, obs_std, action_scale, return_scale, discrete=discrete)

    @classmethod
    def from_arrays(
        cls,
        obs_mean: Any,
        obs_std: Any,
        action_scale: Any,
        return_scale: float,
        *,
        discrete: bool = False,
    ) -> Normalizer:
        def f32(x: Any) -> Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float32))

        return cls(
            f32(obs_mean), f32(obs_std), f32(action_scale), float(return_scale), bool(discrete)
        )

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(
            self.obs_mean.to(device),
            self.obs_std.to(device),
            self.action_scale.to(device),
            self.return_scale,
            self.discrete,
        )

    def states(self, observations: Tensor) -> Tensor:
        """Raw observations (..., state_dim) -> model inputs."""
        return (observations - self.obs_mean) / self.obs_std

    def actions(self, actions: Tensor) -> Tensor:
        """Raw (env) actions (..., act_dim) -> the model's scale; one-hot discrete actions
        pass unchanged."""
        return actions if self.discrete else actions / self.action_scale

    def env_actions(self, actions: Tensor) -> Tensor:
        """Model actions (..., act_dim) -> actions for the env: for discrete actions the
        indices (...) int64 of the one-hot vectors."""
        return actions.argmax(-1) if self.discrete else actions * self.action_scale

    def returns(self, returns_to_go: Tensor) -> Tensor:
        """Raw returns-to-go -> the model's scale."""
        return returns_to_go / self.return_scale

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs_mean": self.obs_mean.cpu(),
            "obs_std": self.obs_std.cpu(),
            "action_scale": self.action_scale.cpu(),
            "return_scale": self.return_scale,
            "discrete": self.discrete,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        return cls.from_arrays(
            state["obs_mean"],
            state["obs_std"],
            state["action_scale"],
            state["return_scale"],
            discrete=state.get("discrete", False),  # older checkpoints are continuous
        )


def check_return_scale(value: float, key: str = "return_scale") -> None:
    """Returns-to-go are divided by it: a finite positive number."""
    if not 0 < value < math.inf:
        raise UserError(f"{key}={value}: expected a finite positive number")
