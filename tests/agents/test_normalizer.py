"""The normaliser: fitted on a dataset, applied to raw batches, inverted for the env, saved."""

from __future__ import annotations

import numpy as np
import torch

from flowrl.agents import Normalizer
from flowrl.data import Episode, EpisodeDataset, WindowSampler


def dataset(seed: int = 0) -> EpisodeDataset:
    rng = np.random.default_rng(seed)
    episodes = []
    for length in (5, 17, 9):
        actions = rng.uniform(-2, 2, size=(length, 3))
        actions[:, 2] = 0.0  # a dimension the data never moves: its scale stays 1
        episodes.append(
            Episode(
                observations=rng.normal(3.0, 5.0, size=(length, 4)),
                actions=actions,
                rewards=rng.normal(size=length),
                terminations=np.zeros(length, bool),
                truncations=np.zeros(length, bool),
            )
        )
    return EpisodeDataset("toy", episodes)


def test_fit_against_float64_statistics_of_the_data():
    data = dataset()
    norm = Normalizer.fit(data, return_scale=50.0)
    states = np.concatenate([ep.observations for ep in data.episodes]).astype(np.float64)
    actions = np.concatenate([ep.actions for ep in data.episodes]).astype(np.float64)
    np.testing.assert_allclose(norm.obs_mean.numpy(), states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.obs_std.numpy(), states.std(0), rtol=1e-5)
    largest = np.abs(actions).max(0)
    np.testing.assert_allclose(norm.action_scale.numpy(), [largest[0], largest[1], 1.0])
    assert norm.return_scale == 50.0


def test_raw_batches_go_to_the_model_scale_and_actions_back():
    data = dataset(1)
    norm = Normalizer.fit(data, return_scale=10.0)
    raw = WindowSampler(data, context_len=4, batch_size=32, seed=0).sample()
    batch = raw.to_torch()
    mean, std = norm.obs_mean.double().numpy(), norm.obs_std.double().numpy()
    expected = (raw.states.astype(np.float64) - mean) / std
    np.testing.assert_allclose(norm.states(batch.states).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        norm.returns(batch.returns_to_go).numpy(), raw.returns_to_go / 10.0, rtol=1e-6
    )
    scaled = norm.actions(batch.actions)
    assert scaled.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(norm.env_actions(scaled), batch.actions)


def test_state_dict_round_trip():
    norm = Normalizer.fit(dataset(2), return_scale=7.0)
    back = Normalizer.from_state_dict(norm.state_dict())
    for name in ("obs_mean", "obs_std", "action_scale"):
        torch.testing.assert_close(getattr(back, name), getattr(norm, name))
    assert back.return_scale == 7.0
