"""`data.stretch`: stretched copies of episodes, checked against episodes of a longer world."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.data import Episode, EpisodeDataset
from flowrl.data.stretch import repeatable_steps, stretch_dataset, stretch_episode, stretched_as
from flowrl.envs.tmaze import TMazePassive
from flowrl.envs.tmaze_policies import TMazeOracle
from flowrl.errors import UserError


def oracle_episode(length: int, seed: int) -> Episode:
    """The T-Maze oracle's episode in a Passive T-Maze of corridor `length`."""
    env, policy = TMazePassive(length=length), TMazeOracle()
    obs, _ = env.reset(seed=seed)
    policy.reset(np.random.default_rng(seed))
    steps: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "term", "trunc")}
    done = False
    while not done:
        action = policy(obs)
        steps["obs"].append(obs)
        steps["act"].append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        steps["rew"].append(reward)
        steps["term"].append(terminated)
        steps["trunc"].append(truncated)
        done = terminated or truncated
    return Episode(
        observations=np.array(steps["obs"]),
        actions=np.array(steps["act"], dtype=np.int64),
        rewards=np.array(steps["rew"]),
        terminations=np.array(steps["term"]),
        truncations=np.array(steps["trunc"]),
    )


@pytest.mark.parametrize(("length", "factor"), [(6, 2), (6, 3), (10, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_stretched_corridor_is_the_episode_of_a_longer_maze(length, factor, seed):
    # the corridor's L - 2 middle steps keep the view [0, 0]: taken f times each, they make
    # the oracle's episode of corridor (L - 2) f + 2, step for step, with the same return
    stretched = stretch_episode(oracle_episode(length, seed), factor)
    longer = oracle_episode((length - 2) * factor + 2, seed)
    for field in ("observations", "actions", "rewards", "terminations", "truncations"):
        np.testing.assert_array_equal(getattr(stretched, field), getattr(longer, field))
    np.testing.assert_array_equal(stretched.returns_to_go, longer.returns_to_go)
    assert stretched.total_return == 1.0


def test_only_steps_that_keep_the_view_and_pay_nothing_repeat():
    obs = np.array([[0.0], [1.0], [1.0], [1.0], [2.0], [2.0]], dtype=np.float32)
    rewards = np.array([0, 0, 0, 0, 5, 1], dtype=np.float32)  # step 4 keeps the view but pays
    episode = Episode(obs, np.arange(6), rewards, np.eye(6, dtype=bool)[5], np.zeros(6, bool))
    np.testing.assert_array_equal(repeatable_steps(episode), [0, 1, 1, 0, 0, 0])
    stretched = stretch_episode(episode, 3)
    np.testing.assert_array_equal(stretched.actions, [0, 1, 1, 1, 2, 2, 2, 3, 4, 5])
    np.testing.assert_array_equal(stretched.observations[:, 0], [0, 1, 1, 1, 1, 1, 1, 1, 2, 2])
    assert stretched.total_return == episode.total_return
    assert stretched.terminations.tolist() == [False] * 9 + [True]


def test_the_dataset_gains_one_copy_per_factor():
    episodes = [oracle_episode(5, seed) for seed in range(3)]
    data = EpisodeDataset("tmaze", episodes, env_id="flowrl/TMazePassive-v0", discrete_actions=4)
    stretched = stretch_dataset(data, [2, 4])
    assert stretched.num_episodes == 9
    assert stretched.lengths.tolist() == [6] * 3 + [9] * 3 + [15] * 3
    assert (stretched.env_id, stretched.discrete_actions) == (data.env_id, 4)
    assert stretched_as(stretched, [2, 4]) and not stretched_as(data, [2, 4])
    assert stretch_dataset(data, []) is data and stretched_as(data, [])


@pytest.mark.parametrize("factors", [[1], [2, 0], [2.5], [True]])
def test_a_factor_below_two_is_refused_by_name(factors):
    data = EpisodeDataset("tmaze", [oracle_episode(5, 0)], discrete_actions=4)
    with pytest.raises(UserError, match=r"data\.stretch=.*integer >= 2"):
        stretch_dataset(data, factors)


def test_data_without_a_repeatable_step_is_refused():
    episode = Episode(np.arange(4.0)[:, None], np.zeros(4, np.int64), np.zeros(4), [0] * 4, [0] * 4)
    with pytest.raises(UserError, match="'ramp' has no step that leaves its observation"):
        stretch_dataset(EpisodeDataset("ramp", [episode], discrete_actions=1), [2])
