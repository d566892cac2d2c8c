"""Roll a policy out in a Gymnasium env and save the episodes as a Minari dataset."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from flowrl.data.episodes import EpisodeDataset
from flowrl.data.minari_source import check_minari_id, read_minari
from flowrl.data.minari_writer import check_target, write_minari_dataset
from flowrl.data.reference import check_reference_scores, gym_reference
from flowrl.envs.make import make_env
from flowrl.errors import UserError

DEFAULT_DATASET_ID = "flowrl/pendulum-scripted-v0"
DEFAULT_ENV_ID = "Pendulum-v1"


def _rollout(env, policy, *, env_seed: int, rng: np.random.Generator):
    """One episode as a minari EpisodeBuffer (T+1 observations)."""
    from minari.data_collector import EpisodeBuffer

    observation, _ = env.reset(seed=env_seed)
    policy.reset(rng)
    observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
    # Minari stores Discrete actions as int64 indices, Box actions in the space's dtype
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    action_dtype = np.int64 if discrete else env.action_space.dtype
    done = False
    while not done:
        action = policy(observation)
        observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    return EpisodeBuffer(
        seed=env_seed,
        observations=np.asarray(observations, dtype=env.observation_space.dtype),
        actions=np.asarray(actions, dtype=action_dtype),
        rewards=np.asarray(rewards),
        terminations=np.asarray(terminations),
        truncations=np.asarray(truncations),
    )


def collect_dataset(
    env_id: str = DEFAULT_ENV_ID,
    policy: str | None = None,
    *,
    episodes: int = 200,
    dataset_id: str = DEFAULT_DATASET_ID,
    seed: int = 0,
    noise: float | None = None,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EpisodeDataset:
    """Collects `episodes` episodes of `policy` in `env_id` and writes Minari `dataset_id`.

    The env is made with `env_kwargs` (e.g. a T-Maze's `length`), which the dataset's env
    spec records. `policy` is a name in `flowrl.envs.COLLECTION_POLICIES` (None: the env's
    default); `noise` is the policy's own (None: its default). Reference returns default
    to flowrl's table for the env (`flowrl.data.reference`). The write is atomic; the dataset
    is read back from disk and returned.
    """
    from flowrl.envs.policy_registry import (
        collection_policy,
        default_policy,
        make_collection_policy,
    )

    entry = collection_policy(policy or default_policy(env_id))
    policy = entry.name  # the current name of a renamed one, recorded in the metadata
    if noise is None:  # the policy's default, recorded in the metadata
        noise = entry.default_noise
    if episodes < 1:
        raise UserError(f"episodes must be at least 1, got {episodes}")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise UserError(f"max_episode_steps must be at least 1, got {max_episode_steps}")
    check_minari_id(dataset_id)
    refs = gym_reference(env_id)  # the table's, unless given
    ref_min = ref_min_score if ref_min_score is not None else (refs[0] if refs else None)
    ref_max = ref_max_score if ref_max_score is not None else (refs[1] if refs else None)
    if ref_min_score is not None or ref_max_score is not None:
        what = "reference returns (--ref-min-score, --ref-max-score, or the env's table)"
        check_reference_scores(ref_min, ref_max, what)
    check_target(dataset_id, overwrite=overwrite)  # before any rollout
    env = make_env(env_id, env_kwargs or {}, max_episode_steps=max_episode_steps)
    actor = make_collection_policy(policy, env, noise=noise)
    env_seeds, policy_seed = np.random.SeedSequence(seed).spawn(2)
    env_seed_list = np.random.default_rng(env_seeds).integers(2**31 - 1, size=episodes)
    rng = np.random.default_rng(policy_seed)
    buffers = [
        _rollout(env, actor, env_seed=int(s), rng=rng)
        for s in tqdm(
            env_seed_list, desc=f"collect {dataset_id}", disable=None if progress else True
        )
    ]
    env.close()

    metadata = {
        "algorithm_name": f"flowrl {policy} (noise={noise})",
        "author": {"flowrl collect"},
        "description": f"{episodes} episodes of the {policy} policy in {env_id}, seed {seed}.",
        "flowrl_collect": {"policy": policy, "noise": noise, "seed": seed, "episodes": episodes},
    }
    if ref_min is not None and ref_max is not None:
        metadata |= {"ref_min_score": float(ref_min), "ref_max_score": float(ref_max)}
    write_minari_dataset(
        dataset_id,
        buffers,
        env_spec=env.spec,
        observation_space=env.observation_space,
        action_space=env.action_space,
        metadata=metadata,
        overwrite=overwrite,
    )
    return read_minari(dataset_id)


def load_or_collect(spec: str, *, download: bool = False, progress: bool = True) -> EpisodeDataset:
    """`load_dataset(spec)`; the built-in demo set (DEFAULT_DATASET_ID) is collected first
    when it is not there yet."""
    from flowrl.data.loader import load_dataset
    from flowrl.data.minari_source import minari_root

    try:
        return load_dataset(spec, download=download)
    except UserError:
        if spec != DEFAULT_DATASET_ID or (minari_root() / DEFAULT_DATASET_ID).exists():
            raise  # a demo set that is there but broken: its own error, no re-collection
    print(
        f"dataset {DEFAULT_DATASET_ID} is not here yet: collecting it (scripted {DEFAULT_ENV_ID})"
    )
    return collect_dataset(dataset_id=DEFAULT_DATASET_ID, progress=progress)
