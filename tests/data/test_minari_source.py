"""Minari datasets: T+1 alignment, agreement with the D4RL reader, metadata, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from flowrl.data import load_dataset
from flowrl.errors import UserError


def test_observations_drop_the_final_one(raw_episodes, write_minari):
    write_minari("toy/set-v0", raw_episodes)
    dataset = load_dataset("toy/set-v0")
    assert dataset.num_episodes == len(raw_episodes)
    for ep, raw in zip(dataset.episodes, raw_episodes, strict=True):
        assert len(ep) == len(raw["rewards"])
        np.testing.assert_array_equal(ep.observations, raw["observations"][:-1])
        np.testing.assert_array_equal(ep.actions, raw["actions"])
        np.testing.assert_array_equal(ep.rewards, raw["rewards"])
        np.testing.assert_array_equal(ep.terminations, raw["terminations"])
        np.testing.assert_array_equal(ep.truncations, raw["truncations"])


def test_minari_and_d4rl_readers_agree(tmp_path, raw_episodes, write_minari, write_d4rl):
    write_minari("toy/same-v0", raw_episodes)
    from_minari = load_dataset("toy/same-v0")
    from_d4rl = load_dataset(str(write_d4rl(tmp_path / "same.hdf5", raw_episodes)))
    assert from_minari.num_episodes == from_d4rl.num_episodes
    for a, b in zip(from_minari.episodes, from_d4rl.episodes, strict=True):
        for field in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_allclose(a.returns_to_go, b.returns_to_go)
    np.testing.assert_allclose(from_minari.obs_mean, from_d4rl.obs_mean)
    np.testing.assert_allclose(from_minari.obs_std, from_d4rl.obs_std)


def test_shared_datasets_layout_with_metadata(minari_root, raw_episodes, write_minari):
    """A `zoo/<env>/<name>-v0` tree (the zoo datasets' layout) with reference returns."""
    write_minari("zoo/toy/medium-v0", raw_episodes, ref_min_score=-20.0, ref_max_score=380.0)
    assert (minari_root / "zoo" / "toy" / "medium-v0" / "data" / "main_data.hdf5").is_file()
    dataset = load_dataset("zoo/toy/medium-v0")
    assert (dataset.ref_min_score, dataset.ref_max_score) == (-20.0, 380.0)
    brute = [sum(float(r) for r in raw["rewards"]) for raw in raw_episodes]
    np.testing.assert_allclose(dataset.returns, brute, rtol=1e-5)
    np.testing.assert_allclose(dataset.normalized_score(180.0), 50.0)


def test_env_id_comes_from_the_env_spec(minari_root):
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    observations, rewards = [obs], []
    for _ in range(3):
        obs, reward, *_ = env.step(np.zeros(1, np.float32))
        observations.append(obs)
        rewards.append(reward)
    buffer = EpisodeBuffer(
        observations=np.array(observations),
        actions=np.zeros((3, 1), np.float32),
        rewards=np.array(rewards),
        terminations=np.zeros(3, bool),
        truncations=np.array([False, False, True]),
    )
    minari.create_dataset_from_buffers(
        "toy/pendulum-v0", [buffer], env="Pendulum-v1", eval_env="Pendulum-v1",
        algorithm_name="zero", author="t", author_email="t@example.com", code_permalink="x",
        description="d",
    )  # fmt: skip
    dataset = load_dataset("toy/pendulum-v0")
    assert dataset.env_id == "Pendulum-v1"
    assert dataset.ref_min_score is None
    assert dataset.normalized_score(0.0) is None


def test_unknown_id_names_the_id_and_where_it_looked(minari_root):
    with pytest.raises(UserError) as err:
        load_dataset("nowhere/nothing-v3")
    assert "nowhere/nothing-v3" in str(err.value)
    assert str(minari_root / "nowhere" / "nothing-v3") in str(err.value)
    assert "download" in str(err.value)


def test_unknown_spec_is_a_user_error(minari_root):
    with pytest.raises(UserError, match="unknown dataset 'not a dataset'"):
        load_dataset("not a dataset")


def test_unreachable_remote_is_a_clear_error(minari_root, monkeypatch):
    monkeypatch.setenv("MINARI_REMOTE", "hf://flowrl-unreachable-remote")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"could not download Minari dataset 'nowhere/nothing-v3'"):
        load_dataset("nowhere/nothing-v3", download=True)


def test_missing_episode_key(minari_root, raw_episodes, write_minari):
    write_minari("toy/broken-v0", raw_episodes)
    path = minari_root / "toy" / "broken-v0" / "data" / "main_data.hdf5"
    with h5py.File(path, "a") as file:
        del file["episode_2/rewards"]
    with pytest.raises(UserError) as err:
        load_dataset("toy/broken-v0")
    assert str(path) in str(err.value)
    assert "'episode_2/rewards'" in str(err.value)
    assert "missing" in str(err.value)


def test_nan_observation(minari_root, raw_episodes, write_minari):
    raw_episodes[3]["observations"][2, 0] = np.nan
    write_minari("toy/nan-v0", raw_episodes)
    with pytest.raises(UserError) as err:
        load_dataset("toy/nan-v0")
    assert "main_data.hdf5" in str(err.value)
    assert "'episode_3/observations'" in str(err.value)
    assert "NaN" in str(err.value)


def test_observations_must_be_one_longer_than_actions(minari_root, raw_episodes, write_minari):
    write_minari("toy/misaligned-v0", raw_episodes)
    path = minari_root / "toy" / "misaligned-v0" / "data" / "main_data.hdf5"
    with h5py.File(path, "a") as file:
        short = file["episode_0/observations"][:-1]
        del file["episode_0/observations"]
        file["episode_0/observations"] = short
    with pytest.raises(UserError, match=r"'episode_0/observations': has 7 rows, expected 8"):
        load_dataset("toy/misaligned-v0")


def test_empty_minari_dataset(minari_root, write_minari):
    write_minari("toy/empty-v0", [])
    with pytest.raises(UserError, match="holds no episodes"):
        load_dataset("toy/empty-v0")
