"""Small real datasets made on the spot: Minari folders (minari's own API), D4RL HDF5 files."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

OBS_DIM, ACT_DIM = 4, 2


def make_raw_episodes(rng: np.random.Generator, lengths=(7, 1, 12, 5, 9), ends="TtTtT") -> list:
    """Episodes as Minari stores them: T+1 observations; `ends`: T terminated, t truncated."""
    episodes = []
    for length, end in zip(lengths, ends, strict=True):
        terminations = np.zeros(length, bool)
        truncations = np.zeros(length, bool)
        (terminations if end == "T" else truncations)[-1] = True
        episodes.append(
            {
                "observations": rng.normal(size=(length + 1, OBS_DIM)).astype(np.float32),
                "actions": rng.uniform(-1, 1, size=(length, ACT_DIM)).astype(np.float32),
                "rewards": rng.normal(size=length).astype(np.float32),
                "terminations": terminations,
                "truncations": truncations,
            }
        )
    return episodes


def write_minari(dataset_id: str, episodes: list, **metadata) -> None:
    """A Minari dataset under MINARI_DATASETS_PATH, written with minari's public API."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(**episode) for episode in episodes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari warns that there is no env spec
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (ACT_DIM,), np.float32),
            algorithm_name="test",
            author="flowrl tests",
            author_email="tests@example.com",
            code_permalink="https://example.com",
            description="test data",
        )
    if metadata:  # minari only stores reference returns it measured in an env itself
        dataset.storage.update_metadata(metadata)


def write_d4rl(path: Path, episodes: list, **overrides) -> Path:
    """The episodes as one flat D4RL-layout HDF5 file; `overrides` replace (None: drop) keys."""
    arrays = {
        "observations": np.concatenate([e["observations"][:-1] for e in episodes]),
        "next_observations": np.concatenate([e["observations"][1:] for e in episodes]),
        "actions": np.concatenate([e["actions"] for e in episodes]),
        "rewards": np.concatenate([e["rewards"] for e in episodes]),
        "terminals": np.concatenate([e["terminations"] for e in episodes]),
        "timeouts": np.concatenate([e["truncations"] for e in episodes]),
    }
    arrays.update(overrides)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file.create_dataset(key, data=value)
        file.create_dataset("infos/qpos", data=np.zeros((len(arrays["rewards"]), 2)))
    return path


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def d4rl_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "d4rl"
    root.mkdir()
    monkeypatch.setenv("D4RL_DATASET_DIR", str(root))
    return root


@pytest.fixture
def raw_episodes() -> list:
    return make_raw_episodes(np.random.default_rng(0))


@pytest.fixture(name="make_raw_episodes")
def _make_raw_episodes():
    return make_raw_episodes


@pytest.fixture(name="write_minari")
def _write_minari(minari_root):
    return write_minari


@pytest.fixture(name="write_d4rl")
def _write_d4rl():
    return write_d4rl
