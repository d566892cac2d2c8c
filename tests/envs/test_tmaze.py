"""T-Maze dynamics against the definition of Ni et al. (2023), written out again here."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import flowrl  # noqa: F401  registers the envs
from flowrl.envs.tmaze import DOWN, LEFT, RIGHT, UP

IDS = {"passive": ("flowrl/TMazePassive-v0", 0), "active": ("flowrl/TMazeActive-v0", 1)}
MOVES = {RIGHT: (1, 0), UP: (0, 1), LEFT: (-1, 0), DOWN: (0, -1)}


def spec_episode(length: int, o: int, goal: int, actions: list[int]):
    """Observations and rewards the definition prescribes for `actions` (float64)."""
    junction, horizon = o + length, length + 2 * o + 1
    assert len(actions) == horizon
    x, y, seen = o, 0, False

    def observe():
        nonlocal seen
        if x == 0 and not seen:
            seen = True
            return [0.0, float(goal)]
        return [1.0, float(y)] if x == junction else [0.0, 0.0]

    observations, rewards = [observe()], []
    for t, action in enumerate(actions, start=1):
        nx, ny = x + MOVES[action][0], y + MOVES[action][1]
        if (ny == 0 and 0 <= nx <= junction) or (nx == junction and ny in (-1, 1)):
            x, y = nx, ny
        observations.append(observe())
        if t == horizon:
            rewards.append(1.0 if y == goal else 0.0)
        else:
            rewards.append(-1.0 / length if x < t - o else 0.0)
    return np.array(observations), np.array(rewards)


def run(env: gym.Env, actions: list[int], seed: int):
    obs, _ = env.reset(seed=seed)
    observations, rewards, ends = [obs], [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        ends.append((terminated, truncated))
    return np.array(observations), np.array(rewards), ends


def goal_of(env: gym.Env, seed: int) -> int:
    """The cued side, read off the first observation that shows the cue."""
    obs, _ = env.reset(seed=seed)
    if obs[1] == 0:  # active: the cue is one step to the left
        obs, *_ = env.step(LEFT)
    return int(obs[1])


def oracle_actions(length: int, o: int, goal: int) -> list[int]:
    """The shortest route: passive right x L then the turn; active left, right x (L + 1)."""
    turn = UP if goal == 1 else DOWN
    return [LEFT] * o + [RIGHT] * (length + o) + [turn]


@pytest.mark.parametrize("kind", ["passive", "active"])
@pytest.mark.parametrize("length", [1, 2, 10, 57, 300])
def test_oracle_scores_one_and_a_wrong_turn_zero(kind, length):
    env_id, o = IDS[kind]
    env = gym.make(env_id, length=length)
    goals = set()
    for seed in range(6):
        goal = goal_of(env, seed)
        goals.add(goal)
        route = oracle_actions(length, o, goal)
        _, rewards, ends = run(env, route, seed)
        assert rewards.sum() == 1.0 and rewards[-1] == 1.0 and not rewards[:-1].any()
        assert ends[-1] == (True, False) and not any(any(e) for e in ends[:-1])
        wrong = [*route[:-1], UP if route[-1] == DOWN else DOWN]
        _, rewards, _ = run(env, wrong, seed)
        assert rewards.sum() == 0.0
    assert goals == {-1, 1}  # both sides come up, drawn through np_random


@pytest.mark.parametrize("kind", ["passive", "active"])
@pytest.mark.parametrize("length", [1, 3, 8])
def test_any_action_sequence_follows_the_definition(kind, length):
    env_id, o = IDS[kind]
    env = gym.make(env_id, length=length)
    rng = np.random.default_rng(length)
    for seed in range(40):
        goal = goal_of(env, seed)
        actions = [int(a) for a in rng.integers(4, size=length + 2 * o + 1)]
        if seed % 2:  # mostly right: reaches the junction and the goal cells more often
            actions = [a if rng.uniform() < 0.3 else RIGHT for a in actions]
        observations, rewards, _ = run(env, actions, seed)
        want_obs, want_rewards = spec_episode(length, o, goal, actions)
        np.testing.assert_array_equal(observations, want_obs)
        np.testing.assert_allclose(rewards, want_rewards, rtol=1e-12)


def test_penalties_count_the_steps_behind_schedule():
    length = 10
    env = gym.make("flowrl/TMazePassive-v0", length=length)
    # LEFT at x = 0 and UP in the corridor are off the grid: the agent waits two steps, so after
    # t steps x = t - 2 < t on every one of the L steps before the last: L penalties of -1/L,
    # and at the last step it is two cells short of the junction, so no goal either.
    _, rewards, _ = run(env, [LEFT, UP] + [RIGHT] * (length - 1), seed=0)
    np.testing.assert_allclose(rewards[:-1], np.full(length, -1.0 / length))
    assert rewards[-1] == 0.0 and rewards.sum() == pytest.approx(-1.0)
    # Active: stepping left to the cue is on schedule (x < t - 1 never holds); waiting there
    # once puts every later step behind.
    env = gym.make("flowrl/TMazeActive-v0", length=length)
    _, rewards, _ = run(env, [LEFT, LEFT] + [RIGHT] * length + [UP], seed=0)
    np.testing.assert_allclose(rewards[:-1], [0.0] + [-1.0 / length] * (length + 1))


@pytest.mark.parametrize("kind", ["passive", "active"])
def test_the_cue_appears_once(kind):
    env_id, o = IDS[kind]
    env = gym.make(env_id, length=6)
    goal = goal_of(env, seed=3)
    actions = [LEFT] * o + [RIGHT, LEFT, LEFT, RIGHT, LEFT] + [RIGHT] * (6 + 2 * o - 5)
    observations, _, _ = run(env, actions, seed=3)
    shown = np.flatnonzero((observations[:, 0] == 0) & (observations[:, 1] != 0))
    assert len(shown) == 1 and observations[shown[0], 1] == goal
    assert shown[0] == o  # the reset observation (passive) or after the first step left


def test_invalid_moves_stay_in_place():
    env = gym.make("flowrl/TMazeActive-v0", length=1)  # start x = 1, junction x = 2, T = 4
    goal = goal_of(env, seed=1)
    turn, other = (UP, DOWN) if goal == 1 else (DOWN, UP)
    # to the junction, onto the cued goal, the same way again (off the grid), right (off)
    observations, rewards, _ = run(env, [RIGHT, turn, turn, RIGHT], seed=1)
    assert observations[1:].tolist() == [[1.0, 0.0]] + [[1.0, float(goal)]] * 3
    assert rewards[-1] == 1.0
    # left twice: the cue cell, then the edge of the grid (the cue is not shown again);
    # the other goal's cell is reached from the junction only
    observations, rewards, _ = run(env, [LEFT, LEFT, RIGHT, other], seed=1)
    assert observations[1:].tolist() == [[0.0, float(goal)], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert rewards[-1] == 0.0


@pytest.mark.parametrize(("kind", "extra"), [("passive", 1), ("active", 3)])
def test_fixed_horizon(kind, extra):
    env_id, _ = IDS[kind]
    env = gym.make(env_id, length=20)
    assert env.unwrapped.horizon == 20 + extra
    env.reset(seed=0)
    for t in range(1, 20 + extra + 1):
        _, _, terminated, truncated, _ = env.step(UP)  # never moves, never ends early
        assert terminated == (t == 20 + extra) and not truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(RIGHT)


def test_registration_spaces_and_kwargs():
    env = gym.make("flowrl/TMazePassive-v0", length=500)
    assert env.spec.kwargs == {"length": 500}
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="length"):
        gym.make("flowrl/TMazeActive-v0", length=0)
    with pytest.raises(ValueError, match="actions"):
        env.step(4)


def test_same_seed_same_episode_and_noise_dims():
    env = gym.make("flowrl/TMazeActive-v0", length=30, noise_dims=3)
    assert env.observation_space.shape == (5,)
    actions = oracle_actions(30, 1, 1)
    a, _, _ = run(env, actions, seed=5)
    b, _, _ = run(env, actions, seed=5)
    c, _, _ = run(env, actions, seed=6)
    np.testing.assert_array_equal(a, b)
    noise = a[:, 2:]
    assert set(np.unique(noise)) == {-1.0, 0.0, 1.0}
    assert not np.array_equal(noise, c[:, 2:])
    plain = gym.make("flowrl/TMazeActive-v0", length=30)
    np.testing.assert_array_equal(a[:, :2], run(plain, actions, seed=5)[0])  # same maze


def test_flag_marks_the_cell_before_the_junction():
    length = 7
    env = gym.make("flowrl/TMazePassive-v0", length=length, flag=True, noise_dims=1)
    assert env.observation_space.shape == (4,)
    observations, _, _ = run(env, oracle_actions(length, 0, 1), seed=0)
    # after t steps right the agent is at x = t; the flag is on at x = L - 1 only
    np.testing.assert_array_equal(np.flatnonzero(observations[:, 2]), [length - 1])
