"""T-Maze collection: Minari datasets with Discrete actions and env kwargs, loaded and sampled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from flowrl.data import (
    Episode,
    EpisodeDataset,
    EpisodeSampler,
    WindowSampler,
    collect_dataset,
    load_dataset,
)
from flowrl.data.loader import union
from flowrl.data.masked import mask_dataset
from flowrl.errors import UserError
from tests.timeouts import scaled

REPO = Path(__file__).resolve().parents[2]
KWARGS = {"length": 12, "noise_dims": 1}


@pytest.fixture
def tmaze(minari_root):
    return collect_dataset(
        "flowrl/TMazePassive-v0", "tmaze-noisy", episodes=30, dataset_id="test/tmaze-v0",
        seed=2, env_kwargs=KWARGS, progress=False,
    )  # fmt: skip


def test_collected_tmaze_loads_with_discrete_actions_and_kwargs(tmaze, minari_root):
    import minari

    loaded = load_dataset("test/tmaze-v0")
    for dataset in (tmaze, loaded):
        assert dataset.discrete_actions == 4 and dataset.act_dim == 4 and dataset.obs_dim == 3
        assert dataset.env_id == "flowrl/TMazePassive-v0" and dataset.env_kwargs == KWARGS
        assert all(ep.actions.dtype == np.int64 and ep.actions.ndim == 1 for ep in dataset.episodes)
        assert set(dataset.lengths) == {13}
    # the noisy recipe: oracle episodes, wrong turns, and noisy ones behind schedule
    assert loaded.returns.max() == 1.0 and (loaded.returns == 0).any() and loaded.returns.min() < 0

    # Minari's own view: a Discrete space, integer actions, an env spec that remakes the env
    data = minari.load_dataset("test/tmaze-v0")
    assert data.action_space == gym.spaces.Discrete(4)
    env = data.recover_environment()
    assert env.unwrapped.length == 12 and env.observation_space.shape == (3,)
    file = minari_root / "test" / "tmaze-v0" / "data" / "main_data.hdf5"
    with h5py.File(file, "r") as h5:
        stored = h5["episode_0/actions"]
        assert stored.ndim == 1 and np.issubdtype(stored.dtype, np.integer)
        seeds = [int(h5[f"episode_{i}"].attrs["seed"]) for i in range(3)]

    # the episodes replay in an env made with the recorded kwargs
    for ep, seed in zip(loaded.episodes, seeds, strict=False):
        obs, _ = env.reset(seed=seed)
        for t in range(len(ep)):
            np.testing.assert_array_equal(ep.observations[t, :2], obs[:2])  # noise differs
            obs, reward, *_ = env.step(int(ep.actions[t]))
            assert ep.rewards[t] == pytest.approx(reward)


def test_samplers_give_one_hot_actions(tmaze):
    eye = np.eye(4, dtype=np.float32)
    window = WindowSampler(tmaze, context_len=5, batch_size=16, seed=0)
    episode = EpisodeSampler(tmaze, max_len=20, batch_size=4, seed=0)
    for batch in (window.sample(), episode.sample(), episode.sample_packed()):
        assert batch.actions.dtype == np.float32 and batch.actions.shape[-1] == 4
        np.testing.assert_array_equal(batch.actions[~batch.valid], 0.0)
        real = batch.actions[batch.valid]
        np.testing.assert_array_equal(real, eye[real.argmax(-1)])
    # packed rows are whole episodes in order: their one-hots spell the stored indices
    packed = episode.sample_packed()
    starts = packed.cu_seqlens[:-1]
    first = packed.actions[0, starts[0] : starts[0] + 13].argmax(-1)
    assert any(np.array_equal(first, ep.actions) for ep in tmaze.episodes)


def discrete_episode(actions) -> Episode:
    n = len(actions)
    return Episode(
        observations=np.zeros((n, 2)),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.zeros(n),
        terminations=np.eye(n, dtype=bool)[-1],
        truncations=np.zeros(n, bool),
    )


def test_discrete_action_checks():
    with pytest.raises(UserError, match=r"actions in \[0, 4\], outside Discrete\(4\)"):
        EpisodeDataset("d", [discrete_episode([0, 4])], discrete_actions=4)
    with pytest.raises(UserError, match="names no discrete action space"):
        EpisodeDataset("d", [discrete_episode([0, 1])])
    a = EpisodeDataset("a", [discrete_episode([0, 1])], discrete_actions=4, env_kwargs={"x": 1})
    b = EpisodeDataset("b", [discrete_episode([2, 3])], discrete_actions=4, env_kwargs={"x": 2})
    c = EpisodeDataset("c", [discrete_episode([1, 2])], discrete_actions=3)
    with pytest.raises(UserError, match="cannot join 'a' and 'c'"):
        union([a, c], "a+c")
    joined = union([a, b], "a+b")
    assert joined.discrete_actions == 4
    assert joined.env_kwargs == {"x": 2}  # the last part's: where the union is evaluated


def test_observation_mask_option(d4rl_dir, write_d4rl):
    rng = np.random.default_rng(0)
    episodes = [
        {
            "observations": rng.normal(size=(n + 1, 11)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminations": np.eye(n, dtype=bool)[-1],
            "truncations": np.zeros(n, bool),
        }
        for n in (5, 8)
    ]
    path = write_d4rl(d4rl_dir / "hopper_medium-v2.hdf5", episodes)
    full = load_dataset(str(path))
    assert full.env_id == "Hopper-v5" and full.obs_dim == 11
    for mask, dims in (("P", slice(0, 5)), ("V", slice(5, 11))):
        masked = mask_dataset(full, mask)
        assert masked.env_id == f"flowrl/Hopper-{mask}-v5"
        for ep, original in zip(masked.episodes, episodes, strict=True):
            np.testing.assert_array_equal(ep.observations, original["observations"][:-1, dims])


def flowrl(*args: str, minari_root: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "MINARI_DATASETS_PATH": str(minari_root)}
    return subprocess.run(
        [sys.executable, "-m", "flowrl", *args], env=env, capture_output=True, text=True,
        timeout=scaled(120),
    )  # fmt: skip


def test_cli_collects_the_oracle_in_the_active_tmaze(minari_root):
    done = flowrl(
        "collect", "--env", "flowrl/TMazeActive-v0", "--env-kwargs", "length=6",
        "--policy", "tmaze-oracle", "--episodes", "4", "--dataset-id", "test/active-v0",
        minari_root=minari_root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = flowrl("datasets", "show", "test/active-v0", "--json", minari_root=minari_root)
    stats = json.loads(shown.stdout)
    assert stats["discrete_actions"] == 4 and stats["env_kwargs"] == {"length": 6}
    assert stats["return_min"] == stats["return_max"] == 1.0
    assert (stats["ref_min_score"], stats["ref_max_score"]) == (0.0, 1.0)  # score = success %
    assert stats["length_min"] == stats["length_max"] == 6 + 3

    bad = flowrl(
        "collect", "--env", "flowrl/TMazeActive-v0", "--env-kwargs", "lenght=6",
        "--episodes", "1", "--dataset-id", "test/bad-v0", minari_root=minari_root,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "lenght" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_render_mode_is_not_an_env_kwarg_to_keep(minari_root):
    dataset = collect_dataset(
        "flowrl/TMazeActive-v0", "tmaze-oracle", episodes=2, dataset_id="test/ansi-v0",
        env_kwargs={"length": 3, "render_mode": "ansi"}, progress=False,
    )  # fmt: skip
    assert dataset.env_kwargs == {"length": 3}
