"""Observation masks pick positions (qpos[1:]) or velocities (qvel) of the real MuJoCo state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import flowrl  # noqa: F401  registers the envs
from flowrl.data import Episode, EpisodeDataset
from flowrl.data.masked import mask_dataset
from flowrl.envs.masked import ObservationMask, masked_env_id
from flowrl.errors import UserError

ENVS = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"]


def simulator_part(env: gym.Env, mask: str) -> np.ndarray:
    """What the mask should keep, read from MuJoCo's own state (Hopper and Walker2d observe
    their velocities clipped to [-10, 10])."""
    data = env.unwrapped.data
    if mask == "P":
        return data.qpos[1:].copy()
    clip = 10.0 if env.spec.id.split("/")[-1].split("-")[0] in ("Hopper", "Walker2d") else np.inf
    return np.clip(data.qvel, -clip, clip)


@pytest.mark.parametrize("mask", ["P", "V"])
@pytest.mark.parametrize("base_id", ENVS)
def test_masked_ids_observe_positions_or_velocities(base_id, mask):
    env = gym.make(masked_env_id(base_id, mask))
    assert env.spec.id == f"flowrl/{base_id.split('-')[0]}-{mask}-v5"
    assert env.spec.max_episode_steps == gym.spec(base_id).max_episode_steps
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(obs, simulator_part(env, mask))
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    full = gym.make(base_id).observation_space.shape[0]
    positions = gym.make(base_id).unwrapped.data.qpos.size - 1
    assert env.observation_space.shape == ((positions if mask == "P" else full - positions),)


def test_wrapper_and_env_kwargs():
    env = ObservationMask(gym.make("Hopper-v5", terminate_when_unhealthy=False), "V")
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs, np.clip(env.unwrapped.data.qvel, -10, 10))
    made = gym.make("flowrl/Hopper-P-v5", terminate_when_unhealthy=False)
    assert made.unwrapped._terminate_when_unhealthy is False
    with pytest.raises(UserError, match="expects the default observation of size 11"):
        gym.make("flowrl/Hopper-P-v5", exclude_current_positions_from_observation=False)
    with pytest.raises(UserError, match="no observation mask for 'Pendulum-v1'"):
        ObservationMask(gym.make("Pendulum-v1"), "P")


def recorded_dataset(base_id: str) -> tuple[EpisodeDataset, dict[str, np.ndarray]]:
    """A few real steps in the full env, with MuJoCo's qpos[1:] and qvel beside them."""
    env = gym.make(base_id)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(2)
    observations, actions, parts = [], [], {"P": [], "V": []}
    for _ in range(6):
        observations.append(obs)
        for mask in parts:
            parts[mask].append(simulator_part(env, mask))
        actions.append(rng.uniform(-1, 1, env.action_space.shape))
        obs, *_ = env.step(actions[-1].astype(np.float32))
    episode = Episode(
        observations=np.array(observations),
        actions=np.array(actions),
        rewards=np.zeros(6),
        terminations=np.zeros(6, bool),
        truncations=np.eye(6, dtype=bool)[-1],
    )
    dataset = EpisodeDataset("recorded", [episode], env_id=base_id, env_kwargs={"x": 1})
    return dataset, {mask: np.array(rows, np.float32) for mask, rows in parts.items()}


@pytest.mark.parametrize("base_id", ENVS)
def test_dataset_mask_matches_the_env_mask(base_id):
    dataset, parts = recorded_dataset(base_id)
    for mask in ("P", "V"):
        masked = mask_dataset(dataset, mask)
        np.testing.assert_array_equal(masked.episodes[0].observations, parts[mask])
        np.testing.assert_array_equal(masked.episodes[0].actions, dataset.episodes[0].actions)
        assert masked.env_id == masked_env_id(base_id, mask)
        assert masked.env_kwargs == {"x": 1}
        assert masked.obs_dim == gym.make(masked.env_id).observation_space.shape[0]


def test_dataset_mask_errors():
    dataset, _ = recorded_dataset("Hopper-v5")
    dataset.env_id = None
    with pytest.raises(UserError, match="names no environment"):
        mask_dataset(dataset, "P")
    dataset.env_id = "Walker2d-v5"
    with pytest.raises(UserError, match="observes 11 numbers per step; mask 'V'"):
        mask_dataset(dataset, "V")
    dataset.env_id = "Hopper-v5"
    with pytest.raises(UserError, match="expected one of P, V"):
        mask_dataset(dataset, "X")
