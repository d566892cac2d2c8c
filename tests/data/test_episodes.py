"""The episode store: returns-to-go, statistics, normalised scores."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.data import Episode, EpisodeDataset
from flowrl.errors import UserError


def episode_from(raw: dict) -> Episode:
    return Episode(
        observations=raw["observations"][:-1],
        actions=raw["actions"],
        rewards=raw["rewards"],
        terminations=raw["terminations"],
        truncations=raw["truncations"],
    )


def test_returns_to_go_match_a_brute_force_sum(raw_episodes):
    for raw in raw_episodes:
        ep = episode_from(raw)
        rewards = [float(r) for r in raw["rewards"]]
        brute = [sum(rewards[t:]) for t in range(len(rewards))]
        np.testing.assert_allclose(ep.returns_to_go, brute, rtol=1e-5, atol=1e-5)
        assert ep.returns_to_go.dtype == np.float32
        assert ep.total_return == pytest.approx(sum(rewards), rel=1e-5)


def test_dataset_statistics(raw_episodes):
    dataset = EpisodeDataset(
        "toy", [episode_from(r) for r in raw_episodes], ref_min_score=-10, ref_max_score=30
    )
    states = [row for raw in raw_episodes for row in raw["observations"][:-1].tolist()]
    np.testing.assert_allclose(dataset.obs_mean, np.mean(states, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dataset.obs_std, np.std(states, axis=0), rtol=1e-5, atol=1e-6)
    returns = [sum(map(float, raw["rewards"])) for raw in raw_episodes]
    stats = dataset.stats()
    assert stats["episodes"] == len(raw_episodes)
    assert stats["steps"] == sum(len(raw["rewards"]) for raw in raw_episodes) == len(states)
    assert (stats["obs_dim"], stats["act_dim"]) == (4, 2)
    assert stats["return_min"] == pytest.approx(min(returns), rel=1e-5)
    assert stats["return_mean"] == pytest.approx(np.mean(returns), rel=1e-5)
    assert stats["return_max"] == pytest.approx(max(returns), rel=1e-5)
    assert stats["terminated_episodes"] == sum(
        bool(raw["terminations"][-1]) for raw in raw_episodes
    )
    np.testing.assert_allclose(dataset.normalized_score([-10.0, 10.0, 30.0]), [0.0, 50.0, 100.0])


def test_constant_feature_gets_a_floored_std(raw_episodes):
    for raw in raw_episodes:
        raw["observations"][:, 2] = 3.0
    dataset = EpisodeDataset("toy", [episode_from(r) for r in raw_episodes])
    assert dataset.obs_std[2] > 0
    assert np.isfinite(
        (dataset.episodes[0].observations - dataset.obs_mean) / dataset.obs_std
    ).all()


def test_empty_dataset_is_a_user_error():
    with pytest.raises(UserError, match="'nothing' holds no episodes"):
        EpisodeDataset("nothing", [])


def test_episode_arrays_must_agree_in_length(raw_episodes):
    raw = raw_episodes[0]
    with pytest.raises(ValueError, match="differ in length"):
        Episode(
            raw["observations"],
            raw["actions"],
            raw["rewards"],
            raw["terminations"],
            raw["truncations"],
        )
