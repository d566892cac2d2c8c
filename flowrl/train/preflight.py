"""Checks made before the run folder is written, so that a run fails in seconds, not hours:
`check_run`, the one preflight of a run, makes them all.

Besides the config's own checks, what the config alone cannot tell: the device exists here
and the attention backend runs on it; an episode context holds the data's longest episode;
the evaluation env is made and its spaces compared with the dataset's (actions far outside
the env's range are reported); sampled actions need discrete ones.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from flowrl.agents import DecisionTransformerConfig
from flowrl.agents.policy import check_sampling
from flowrl.data import EpisodeDataset
from flowrl.envs.record import EnvRecord, resolve_env
from flowrl.envs.spaces import check_spaces
from flowrl.errors import DataWarning, UserError
from flowrl.nn.device import parse_device
from flowrl.ops import backend_unavailable
from flowrl.train import distributed
from flowrl.train.config import TrainConfig
from flowrl.train.config_checks import check_config

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


def check_run(cfg: TrainConfig, dataset: EpisodeDataset) -> tuple[torch.device, EnvRecord]:
    """The one preflight of a run, before its folder is touched: the config
    (`check_config`), then what it needs of this machine and of the data, and the evaluation
    env, made (on rank 0) and compared with the data. Returns the device and that env.
    `flowrl.train.run`, `flowrl.fit` and `--resume` all come here, through the `Trainer`."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    check_backend(cfg.model, device)
    check_precision(cfg.precision, device)
    check_episode_context(cfg.model, dataset)
    env = eval_env(dataset, cfg.eval.env_id, cfg.eval.env_kwargs)
    distributed.main_verdict(lambda: check_env(dataset, env))
    check_sampling(
        cfg.eval.sample_actions,
        discrete=dataset.discrete_actions is not None,
        refusal=f"eval.sample_actions=true needs discrete actions; dataset {dataset.name!r} "
        "has continuous ones",
    )
    return device, env


def resolve_device(name: str) -> torch.device:
    """The configured device; under torchrun, CUDA means this rank's GPU, cuda:LOCAL_RANK."""
    device = parse_device(name)
    if device.type == "cuda" and distributed.launched():
        if name not in ("cuda", "auto"):
            raise UserError(f"device={name!r} under torchrun: use cuda or auto (cuda:LOCAL_RANK)")
        index, count = distributed.local_rank(), torch.cuda.device_count()
        if index >= count:
            raise UserError(
                f"LOCAL_RANK={index} but this machine has {count} CUDA devices: "
                f"start at most {count} processes per node"
            )
        return torch.device("cuda", index)
    return device


def eval_env(
    dataset: EpisodeDataset, env_id: str | None, env_kwargs: dict[str, Any] | None = None
) -> EnvRecord:
    """The env to evaluate in: `eval.env_id` if set, else the dataset's (`resolve_env`),
    updated by `eval.env_kwargs`; a UserError when neither names one."""
    return resolve_env(
        dataset.env,
        env_id,
        env_kwargs,
        missing=f"dataset {dataset.name!r} names no environment to evaluate in: set one with "
        "--set eval.env_id=ENV (a Gymnasium id such as Hopper-v5)",
    )


def check_env(dataset: EpisodeDataset, env: EnvRecord) -> None:
    """Makes `env`, takes one reset and one step in it (`EnvRecord.try_out`) and checks its
    spaces against the dataset; warns on action ranges."""
    made = env.try_out()
    check_spaces(
        f"dataset {dataset.name!r} and environment {env.env_id}",
        "data",
        made.observation_space,
        made.action_space,
        obs_dim=dataset.obs_dim,
        act_dim=dataset.act_dim,
        discrete=dataset.discrete_actions is not None,
        fix="set eval.env_id to the env the data came from",
    )
    if dataset.discrete_actions is None:
        warn_on_action_range(dataset, made.action_space, env.env_id)


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
