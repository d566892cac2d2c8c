"""Checks made before the first training step, so that a run fails in seconds, not hours.

The evaluation env is made and its spaces compared with the dataset's; actions far outside
the env's range are reported.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np

from flowrl.data import EpisodeDataset
from flowrl.errors import DataWarning, UserError

# An action is "far" outside a Box when it passes a bound by this fraction of the range.
ACTION_MARGIN = 0.1


def eval_env_id(dataset: EpisodeDataset, configured: str | None) -> str:
    """`eval.env_id` if set, else the env the dataset names; a UserError when neither does."""
    env_id = configured or dataset.env_id
    if not env_id:
        raise UserError(
            f"dataset {dataset.name!r} names no environment to evaluate in: set one with "
            "--set eval.env_id=ENV (a Gymnasium id such as Hopper-v5)"
        )
    return env_id


def check_env(dataset: EpisodeDataset, env_id: str) -> None:
    """Makes `env_id` and checks its spaces against the dataset; warns on action ranges."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as err:
        raise UserError(f"cannot make environment {env_id!r}: {err}") from None
    except ImportError as err:
        raise UserError(f"environment {env_id!r} needs a missing package: {err}") from None
    with env:
        obs_space, act_space = env.observation_space, env.action_space
    where = f"dataset {dataset.name!r} and environment {env_id}"
    for what, space, dim in (
        ("observations", obs_space, dataset.obs_dim),
        ("actions", act_space, dataset.act_dim),
    ):
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise UserError(f"{where}: the env's {what} are {space}, flowrl needs a flat Box")
        if space.shape[0] != dim:
            raise UserError(
                f"{where} do not match: {what} of size {dim} in the data, "
                f"{space.shape[0]} in the env (set eval.env_id to the env the data came from)"
            )
    warn_on_action_range(dataset, act_space, env_id)


def warn_on_action_range(dataset: EpisodeDataset, space: gym.spaces.Box, env_id: str) -> None:
    """A DataWarning per action dimension whose data passes the env's bounds by far."""
    actions = np.concatenate([ep.actions for ep in dataset.episodes])
    low, high = actions.min(0), actions.max(0)
    span = np.where(np.isfinite(space.high - space.low), space.high - space.low, np.inf)
    margin = ACTION_MARGIN * span
    for dim in np.flatnonzero((low < space.low - margin) | (high > space.high + margin)):
        warnings.warn(
            f"dataset {dataset.name!r}: actions of dimension {dim} span "
            f"[{low[dim]:.3g}, {high[dim]:.3g}], outside {env_id}'s action range "
            f"[{space.low[dim]:.3g}, {space.high[dim]:.3g}]; the env will clip the agent's actions",
            DataWarning,
            stacklevel=2,
        )
