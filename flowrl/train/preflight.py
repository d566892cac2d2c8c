"""Checks made before the run folder is written, so that a run fails in seconds, not hours.

What the config alone cannot tell: the attention backend runs on this machine's device;
an episode context holds the data's longest episode; the evaluation env is made and its
spaces compared with the dataset's (actions far outside the env's range are reported).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from flowrl.agents import DecisionTransformerConfig
from flowrl.data import EpisodeDataset
from flowrl.envs.make import make_env
from flowrl.errors import DataWarning, UserError
from flowrl.ops import backend_unavailable

# An action is "far" outside a Box when it passes a bound by this fraction of the range.
ACTION_MARGIN = 0.1


def check_backend(model: DecisionTransformerConfig, device: torch.device) -> None:
    """`model.attention_backend` runs on `device` here (e.g. triton needs CUDA)."""
    reason = backend_unavailable(model.attention_backend, device)
    if reason is not None:
        raise UserError(
            f"model.attention_backend={model.attention_backend} {reason}: "
            "use model.attention_backend=auto (or parallel, chunked) on this machine"
        )


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 autocast trains on CUDA; flowrl's attention backward on the CPU is fp32 only."""
    if precision == "bf16" and device.type != "cuda":
        raise UserError(
            f"precision=bf16 trains on CUDA devices only, not on {device.type}: "
            "use precision=auto (fp32 on the CPU) or fp32"
        )


def check_episode_context(model: DecisionTransformerConfig, dataset: EpisodeDataset) -> None:
    """In episode mode the context holds whole episodes: none of the data may be longer
    (a longer one would train on its prefix alone, never on its end)."""
    if model.context_mode != "episode":
        return
    longest = int(dataset.lengths.max())
    if longest > model.context_len:
        raise UserError(
            f"model.context_len={model.context_len} but dataset {dataset.name!r} has episodes "
            f"of up to {longest} steps: in episode mode the context holds whole episodes; "
            f"set model.context_len={longest} (or train in window mode)"
        )


def eval_env_id(dataset: EpisodeDataset, configured: str | None) -> str:
    """`eval.env_id` if set, else the env the dataset names; a UserError when neither does."""
    env_id = configured or dataset.env_id
    if not env_id:
        raise UserError(
            f"dataset {dataset.name!r} names no environment to evaluate in: set one with "
            "--set eval.env_id=ENV (a Gymnasium id such as Hopper-v5)"
        )
    return env_id


def check_env(
    dataset: EpisodeDataset, env_id: str, env_kwargs: dict[str, Any] | None = None
) -> None:
    """Makes `env_id` (with the dataset's recorded env kwargs when it is the dataset's env,
    updated by `env_kwargs`) and checks its spaces against the dataset; warns on action ranges."""
    recorded = dataset.env_kwargs if env_id == dataset.env_id else {}
    with make_env(env_id, {**recorded, **(env_kwargs or {})}) as env:
        obs_space, act_space = env.observation_space, env.action_space
    where = f"dataset {dataset.name!r} and environment {env_id}"
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise UserError(f"{where}: the env's observations are {obs_space}, flowrl needs a flat Box")
    if obs_space.shape[0] != dataset.obs_dim:
        raise UserError(
            f"{where} do not match: observations of size {dataset.obs_dim} in the data, "
            f"{obs_space.shape[0]} in the env (set eval.env_id to the env the data came from)"
        )
    if dataset.discrete_actions is not None:
        if (
            not isinstance(act_space, gym.spaces.Discrete)
            or act_space.n != dataset.discrete_actions
        ):
            raise UserError(
                f"{where} do not match: Discrete({dataset.discrete_actions}) actions in the data, "
                f"{act_space} in the env"
            )
        return
    if not (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1):
        raise UserError(f"{where}: the env's actions are {act_space}, flowrl needs a flat Box")
    if act_space.shape[0] != dataset.act_dim:
        raise UserError(
            f"{where} do not match: actions of size {dataset.act_dim} in the data, "
            f"{act_space.shape[0]} in the env (set eval.env_id to the env the data came from)"
        )
    warn_on_action_range(dataset, act_space, env_id)


def check_sampling(dataset: EpisodeDataset, sample_actions: bool) -> None:
    """`eval.sample_actions` needs discrete actions (a categorical policy to sample from)."""
    if sample_actions and dataset.discrete_actions is None:
        raise UserError(
            f"eval.sample_actions=true needs discrete actions; dataset {dataset.name!r} has "
            "continuous ones"
        )


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
