"""The scripted T-Maze policies: the oracle solves every maze, the noisy recipe its shares."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import flowrl  # noqa: F401  registers the envs
from flowrl.envs import make_collection_policy
from flowrl.envs.tmaze_policies import TMazeNoisy, TMazeOracle
from flowrl.errors import UserError


def returns(env: gym.Env, policy, episodes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        policy.reset(rng)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("env_id", ["flowrl/TMazePassive-v0", "flowrl/TMazeActive-v0"])
@pytest.mark.parametrize("kwargs", [{"length": 1}, {"length": 40, "noise_dims": 2, "flag": True}])
def test_oracle_always_scores_one(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    np.testing.assert_array_equal(returns(env, TMazeOracle(), 20), np.ones(20))


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within 4 standard deviations of n * p."""
    return abs(hits - n * p) <= 4 * np.sqrt(n * p * (1 - p))


def test_noisy_shares():
    env = gym.make("flowrl/TMazePassive-v0", length=10)
    n = 400
    wrong = returns(env, TMazeNoisy(wrong_turn=0.3, noisy=0.0), n)
    assert set(np.unique(wrong)) == {0.0, 1.0}  # on schedule: no penalties, one turn or other
    assert binomial_ok(int((wrong == 0).sum()), n, 0.3)

    noisy = returns(env, TMazeNoisy(wrong_turn=0.0, noisy=0.5, random_step=0.2), n)
    # Half the episodes are the oracle's. In the other half each step is the oracle's move with
    # probability 0.8 + 0.2 / 4 = 0.85; one other move on any of the L steps before the last
    # puts the agent behind for good (penalties, no goal), one at the last step misses the goal.
    assert binomial_ok(int((noisy == 1).sum()), n, 0.5 + 0.5 * 0.85**11)
    assert binomial_ok(int((noisy < 0).sum()), n, 0.5 * (1 - 0.85**10))
    assert noisy.min() >= -1.0

    default = returns(env, make_collection_policy("tmaze-noisy", env), n)
    assert default.max() == 1.0 and (default == 0).any() and (default < 0).any()


def test_bad_policy_settings():
    with pytest.raises(UserError, match="wrong_turn must be a probability"):
        TMazeNoisy(wrong_turn=1.5)
    with pytest.raises(UserError, match="or flowrl/TMazeActive-v0, not Pendulum-v1"):
        make_collection_policy("tmaze-oracle", gym.make("Pendulum-v1"))
    with pytest.raises(UserError, match="noise must be in"):
        make_collection_policy("tmaze-noisy", gym.make("flowrl/TMazeActive-v0"), noise=2.0)
