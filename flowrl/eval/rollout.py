"""Rollouts of an agent in M Gymnasium environments at once, for several target returns.

Episode i of every target is reset with seed `seed + i`, whichever environment slot
runs it, so results depend on the seed alone, not on M. A discrete agent that samples its
actions (`sample_actions`) restarts its draws from the same episode seed.

The vector env runs without autoreset and steps every slot at every step (Gymnasium's
vector API cannot step a subset). A slot with no episode left to run is parked: reset
whenever its environment ends, and its actions and rewards are ignored.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from flowrl.agents.agent import DecisionTransformerAgent
from flowrl.agents.policy import check_sampling
from flowrl.envs.make import env_errors, env_spec
from flowrl.envs.record import EnvRecord, resolve_env
from flowrl.envs.spaces import check_spaces
from flowrl.errors import DataWarning, UserError


class EvaluationStopped(Exception):
    """The evaluation's `stop` asked it to end before its episodes were done."""


@dataclass
class TargetResult:
    target_return: float
    returns: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)
    normalized: np.ndarray | None  # D4RL-style scores, None without reference returns

    def summary(self) -> dict[str, float | int | None]:
        norm = self.normalized
        return {
            "target_return": self.target_return,
            "episodes": len(self.returns),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "length_mean": float(self.lengths.mean()),
            "normalized_mean": None if norm is None else float(norm.mean()),
            "normalized_std": None if norm is None else float(norm.std()),
        }


VECTORIZATION_MODES = ("sync", "async")


@dataclass(frozen=True)
class EvalDefaults:
    """An evaluation's defaults, the one place that holds them: `evaluate`, `record_videos`,
    `flowrl eval` and a training config's `eval` section take theirs from here."""

    episodes: int = 10  # per target return
    num_envs: int = 10  # environments run at once
    seed: int = 0  # episode i is reset with seed + i
    max_steps: int = 1000  # episode step limit (the env's own limit applies too)
    # evaluations during training start here: episodes other than `flowrl eval`'s
    training_seed: int = 10_000


EVAL_DEFAULTS = EvalDefaults()


def make_envs(
    env_id: str,
    num_envs: int,
    *,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
    wrappers: Sequence[Callable[[gym.Env], gym.Wrapper]] = (),
    vectorization: str = "sync",
) -> gym.vector.VectorEnv:
    """Vector env without autoreset: the evaluator resets each slot itself.

    Each env is made with `env_kwargs` (e.g. a T-Maze's `length`). `vectorization="sync"`
    steps every env in this process; "async" runs each in its own worker process
    (Gymnasium's AsyncVectorEnv), which pays where there are cores to spare.
    """
    if vectorization not in VECTORIZATION_MODES:
        raise UserError(
            f"vectorization={vectorization!r}: expected one of {', '.join(VECTORIZATION_MODES)}"
        )
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    with env_errors(env_id, kwargs):
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=vectorization,
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
            wrappers=list(wrappers) or None,
            **kwargs,
        )


def episode_limit(envs: gym.vector.VectorEnv, env_id: str, max_steps: int) -> int:
    """Steps an episode may last: an env with a fixed horizon (an int attribute `horizon`,
    like the T-Mazes) runs to it, any other stops at `max_steps` or its own time limit.

    The horizon is read from the sync envs themselves, or from one env made in this process
    for worker-process envs (a failed attribute lookup there would close a worker's pipe)."""
    if isinstance(envs, gym.vector.SyncVectorEnv):
        horizon = getattr(envs.envs[0].unwrapped, "horizon", None)
    else:
        with closing(envs.env_fns[0]()) as env:
            horizon = getattr(env.unwrapped, "horizon", None)
    if isinstance(horizon, int):
        return horizon
    spec = env_spec(env_id)
    return min(max_steps, spec.max_episode_steps or max_steps)


def acting_env(
    agent: DecisionTransformerAgent, env_id: str | None, env_kwargs: dict[str, Any] | None
) -> EnvRecord:
    """The env the agent acts in: `env_id`, else its own (`resolve_env`), made with its
    recorded kwargs when it is its env, updated by `env_kwargs`."""
    return resolve_env(
        agent.env,
        env_id,
        env_kwargs,
        missing="the agent names no environment to evaluate in; pass env_id",
    )


def check_actions(actions: np.ndarray, space: gym.Space, num_envs: int) -> np.ndarray:
    """The policy's actions as the vector env takes them: Discrete envs need integer indices
    of shape (M,), which pass through unchanged."""
    if not isinstance(space, gym.spaces.Discrete):
        return actions
    actions = np.asarray(actions)
    if actions.shape != (num_envs,) or not np.issubdtype(actions.dtype, np.integer):
        raise UserError(
            f"a {space} env needs one integer action per env, shape ({num_envs},); the agent "
            f"gave {actions.dtype} actions of shape {actions.shape} (it is not a discrete agent)"
        )
    return actions


def check_rollout_settings(
    *,
    episodes: int,
    num_envs: int,
    max_steps: int,
    target_returns: Sequence[float],
    setting: Callable[[str, Any], str] = lambda key, value: f"{key}={value}",
) -> None:
    """A UserError naming the first bad setting of an evaluation as the caller calls it
    (`setting(parameter, value)`: `eval.episodes=0`, `--episodes 0`). The one check of these
    settings: `evaluate`, the training config and `flowrl eval` all call it."""
    for key, value in (("episodes", episodes), ("num_envs", num_envs), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UserError(f"{setting(key, value)}: expected a positive integer")
    for i, target in enumerate(target_returns):
        if not math.isfinite(target):
            raise UserError(f"{setting('target_returns', target)}: expected a finite return")
        if target in target_returns[:i]:
            raise UserError(f"{setting('target_returns', target)}: given twice")


def target_labels(target_returns: Sequence[float]) -> list[str]:
    """How each target return is named in metrics keys, JSON and printed lines: as `:g`
    prints it (`-150`, `3600`), or, where two would print alike, each in its shortest exact
    form (`-150.0`, `-150.00001`). Targets are distinct (`check_rollout_settings`), so the
    labels are too."""
    short = [f"{target:g}" for target in target_returns]
    if len(set(short)) == len(short):
        return short
    return [repr(float(target)) for target in target_returns]


def evaluate(
    agent: DecisionTransformerAgent,
    *,
    target_returns: Sequence[float] | None = None,
    episodes: int = EVAL_DEFAULTS.episodes,
    num_envs: int = EVAL_DEFAULTS.num_envs,
    seed: int = EVAL_DEFAULTS.seed,
    max_steps: int = EVAL_DEFAULTS.max_steps,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    recurrent: bool | None = None,
    sample_actions: bool = False,
    device: torch.device | str | None = None,
    progress: bool = False,
    vectorization: str = "sync",
    stop: Callable[[], bool] | None = None,
) -> list[TargetResult]:
    """Runs `episodes` episodes per target return (default: the agent's); returns one result
    per target.

    At most `num_envs` environments run at once, and no more than there are episodes.
    Envs are made with the agent's recorded env kwargs (those of its dataset) when `env_id`
    is the agent's env, updated by `env_kwargs` (e.g. {"length": 5000}). A discrete agent
    takes its most likely actions, or with `sample_actions` samples them. The agent acts on
    `device`, default its model's. `vectorization` "async" steps the envs in worker
    processes (see `make_envs`). `stop`, asked after every step of the envs, ends the
    evaluation early with `EvaluationStopped` when it returns True (e.g. on Ctrl-C).
    """
    model = agent.model
    env = acting_env(agent, env_id, env_kwargs)
    target_returns = list(agent.target_returns if target_returns is None else target_returns)
    if not target_returns:
        raise UserError("no target returns to evaluate")
    check_rollout_settings(
        episodes=episodes, num_envs=num_envs, max_steps=max_steps, target_returns=target_returns
    )
    check_sampling(sample_actions, discrete=model.cfg.discrete)  # before any env is made
    if device is None:
        device = next(model.parameters()).device
    return run_episodes(
        agent,
        make_envs(
            env.env_id,
            min(num_envs, episodes * len(target_returns)),
            env_kwargs=dict(env.kwargs),
            vectorization=vectorization,
        ),
        env.env_id,
        target_returns=target_returns,
        episodes=episodes,
        seed=seed,
        max_steps=max_steps,
        recurrent=recurrent,
        sample_actions=sample_actions,
        device=device,
        progress=progress,
        stop=stop,
    )


def run_episodes(
    agent: DecisionTransformerAgent,
    envs: gym.vector.VectorEnv,
    env_id: str,
    *,
    target_returns: list[float],
    episodes: int,
    seed: int,
    max_steps: int,
    recurrent: bool | None,
    sample_actions: bool,
    device: torch.device | str,
    progress: bool,
    stop: Callable[[], bool] | None = None,
) -> list[TargetResult]:
    """`evaluate` in the given vector env, which it closes, whether it succeeds or not."""
    num_envs = envs.num_envs
    returns = np.zeros((len(target_returns), episodes))
    lengths = np.zeros((len(target_returns), episodes), dtype=np.int64)
    with closing(envs):
        cfg = agent.model.cfg
        check_spaces(
            f"the agent and environment {env_id}",
            "agent",
            envs.single_observation_space,
            envs.single_action_space,
            obs_dim=cfg.state_dim,
            act_dim=cfg.act_dim,
            discrete=isinstance(envs.single_action_space, gym.spaces.Discrete),
            fix="act in the env the agent trained in",
        )
        limit = episode_limit(envs, env_id, max_steps)
        policy = agent.policy(
            num_envs, limit + 1, recurrent=recurrent, device=device, sample=sample_actions
        )
        jobs = deque((t, i) for t in range(len(target_returns)) for i in range(episodes))
        slot_job: list[tuple[int, int] | None] = [None] * num_envs
        ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
        cut = 0  # episodes stopped at `limit` before the env ended them

        def assign(free: np.ndarray, obs: np.ndarray | None) -> np.ndarray:
            """Resets the free slots with the next jobs, or parks them; returns observations."""
            seeds: list[int | None] = [None] * num_envs
            targets = np.zeros(num_envs)
            for slot in np.flatnonzero(free):
                slot_job[slot] = jobs.popleft() if jobs else None
                if slot_job[slot] is not None:
                    t, i = slot_job[slot]
                    seeds[slot], targets[slot] = seed + i, target_returns[t]
            new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": free})
            policy.reset(free, targets, seeds)
            ep_return[free], ep_length[free] = 0.0, 0
            return new_obs if obs is None else np.where(free[:, None], new_obs, obs)

        bar = tqdm(total=returns.size, desc=f"eval {env_id}", unit="ep", disable=not progress)
        with bar:
            obs = assign(np.ones(num_envs, dtype=bool), None)
            while any(job is not None for job in slot_job):
                actions = check_actions(policy.act(obs), envs.single_action_space, num_envs)
                obs, reward, terminated, truncated, _ = envs.step(actions)
                if stop is not None and stop():
                    raise EvaluationStopped
                policy.observe(reward)
                ep_return += reward
                ep_length += 1
                ended = terminated | truncated
                active = np.array([job is not None for job in slot_job])
                finished = active & (ended | (ep_length >= limit))
                cut += int((finished & ~ended).sum())
                for slot in np.flatnonzero(finished):
                    t, i = slot_job[slot]
                    returns[t, i], lengths[t, i] = ep_return[slot], ep_length[slot]
                bar.update(int(finished.sum()))
                free = finished | (ended & ~active)
                if free.any():
                    obs = assign(free, obs)
    if cut and agent.normalized_score(returns[0]) is not None:
        warn_on_cut_episodes(env_id, limit)
    return [
        TargetResult(target, returns[t], lengths[t], agent.normalized_score(returns[t]))
        for t, target in enumerate(target_returns)
    ]


def warn_on_cut_episodes(env_id: str, limit: int) -> None:
    """A note that the normalised scores are of returns cut at `limit` steps: the reference
    returns they are scaled by are of whole episodes."""
    own = env_spec(env_id).max_episode_steps
    warnings.warn(
        f"episodes of {env_id} stopped at max_steps={limit} before the env ended them"
        + (f" (its own limit is {own} steps)" if own else "")
        + ": the normalised scores compare these partial returns with whole-episode "
        "reference returns; raise max_steps for comparable scores",
        DataWarning,
        stacklevel=3,
    )
