"""Rollouts of an agent in M Gymnasium environments at once, for several target returns.

Episode i of every target is reset with seed `seed + i`, whichever environment slot
runs it, so results depend on the seed alone, not on M.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from flowrl.agents.agent import Agent
from flowrl.errors import UserError


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


def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env without autoreset: the evaluator resets each slot itself."""
    try:
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
        )
    except gym.error.Error as err:
        raise UserError(f"cannot make environment {env_id!r}: {err}") from None
    except ImportError as err:
        raise UserError(f"environment {env_id!r} needs a missing package: {err}") from None


def episode_limit(env_id: str, max_steps: int) -> int:
    spec = gym.spec(env_id)
    return min(max_steps, spec.max_episode_steps or max_steps)


def evaluate(
    agent: Agent,
    *,
    target_returns: list[float],
    episodes: int = 10,
    num_envs: int = 10,
    seed: int = 0,
    max_steps: int = 1000,
    env_id: str | None = None,
    recurrent: bool | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[TargetResult]:
    """Runs `episodes` episodes per target return; returns one result per target."""
    env_id = env_id or agent.env_id
    if not env_id:
        raise UserError("the agent names no environment to evaluate in; pass env_id")
    if not target_returns:
        raise UserError("no target returns to evaluate")
    envs = make_envs(env_id, num_envs)
    try:
        limit = episode_limit(env_id, max_steps)
        policy = agent.policy(num_envs, limit + 1, recurrent=recurrent, device=device)
        jobs = deque((t, i) for t in range(len(target_returns)) for i in range(episodes))
        returns = np.zeros((len(target_returns), episodes))
        lengths = np.zeros((len(target_returns), episodes), dtype=np.int64)
        slot_job: list[tuple[int, int] | None] = [None] * num_envs
        ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
        bar = tqdm(total=len(jobs), desc=f"eval {env_id}", unit="ep", disable=not progress)

        def assign(free: np.ndarray, obs: np.ndarray | None) -> np.ndarray:
            """Starts the next jobs in the free slots; returns the observations."""
            start = np.zeros(num_envs, dtype=bool)
            seeds: list[int | None] = [None] * num_envs
            targets = np.zeros(num_envs)
            for slot in np.flatnonzero(free):
                slot_job[slot] = jobs.popleft() if jobs else None
                if slot_job[slot] is not None:
                    t, i = slot_job[slot]
                    start[slot], seeds[slot], targets[slot] = True, seed + i, target_returns[t]
            if start.any():
                new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": start})
                obs = new_obs if obs is None else np.where(start[:, None], new_obs, obs)
                policy.reset(start, targets)
                ep_return[start], ep_length[start] = 0.0, 0
            return obs

        obs = assign(np.ones(num_envs, dtype=bool), None)
        while any(job is not None for job in slot_job):
            actions = policy.act(obs)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            policy.observe(reward)
            ep_return += reward
            ep_length += 1
            done = terminated | truncated | (ep_length >= limit)
            finished = np.array([done[s] and slot_job[s] is not None for s in range(num_envs)])
            for slot in np.flatnonzero(finished):
                t, i = slot_job[slot]
                returns[t, i], lengths[t, i] = ep_return[slot], ep_length[slot]
                bar.update(1)
            if finished.any():
                obs = assign(finished, obs)
        bar.close()
    finally:
        envs.close()
    return [
        TargetResult(target, returns[t], lengths[t], agent.normalized_score(returns[t]))
        for t, target in enumerate(target_returns)
    ]
