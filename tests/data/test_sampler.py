"""Samplers: windows match their episodes, padding and its valid flags, determinism, resumption."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.data import Episode, EpisodeDataset, EpisodeSampler, WindowSampler
from flowrl.errors import UserError

LENGTHS = (1, 3, 8, 25, 40, 7)


def labelled_dataset(lengths=LENGTHS, seed: int = 0) -> EpisodeDataset:
    """Observation columns 0 and 1 hold the episode index and the step, to trace every row."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index, length in enumerate(lengths):
        observations = np.column_stack(
            [np.full(length, index), np.arange(length), rng.normal(size=length)]
        )
        terminations = np.zeros(length, bool)
        terminations[-1] = True
        episodes.append(
            Episode(
                observations=observations,
                actions=rng.uniform(-1, 1, size=(length, 2)),
                rewards=rng.normal(size=length),
                terminations=terminations,
                truncations=np.zeros(length, bool),
            )
        )
    return EpisodeDataset("labelled", episodes)


def check_rows_against_episodes(dataset, batch, row_lengths):
    """Each row is a run of consecutive raw steps of one episode, then zero pads."""
    states = batch.states
    for b in range(len(batch.valid)):
        n = int(batch.valid[b].sum())
        assert n == row_lengths[b]
        assert batch.valid[b, :n].all() and not batch.valid[b, n:].any()  # right padding
        episode = dataset.episodes[round(float(states[b, 0, 0]))]
        start = int(batch.timesteps[b, 0])
        steps = np.arange(start, start + n)
        np.testing.assert_array_equal(batch.timesteps[b, :n], steps)
        np.testing.assert_array_equal(states[b, :n], episode.observations[steps])
        np.testing.assert_array_equal(batch.actions[b, :n], episode.actions[steps])
        np.testing.assert_array_equal(batch.returns_to_go[b, :n], episode.returns_to_go[steps])
        for field in ("states", "actions", "returns_to_go", "timesteps"):
            assert not getattr(batch, field)[b, n:].any()


def test_windows_match_their_episodes_and_pad_right():
    dataset = labelled_dataset()
    sampler = WindowSampler(dataset, context_len=10, batch_size=256, seed=3)
    batch = sampler.sample()
    assert batch.states.shape == (256, 10, 3) and batch.states.dtype == np.float32
    assert batch.actions.shape == (256, 10, 2) and batch.actions.dtype == np.float32
    assert batch.returns_to_go.shape == (256, 10) and batch.returns_to_go.dtype == np.float32
    assert batch.timesteps.dtype == np.int64 and batch.valid.dtype == bool
    lengths = np.array(LENGTHS)[np.round(batch.states[:, 0, 0]).astype(int)]
    expected = np.minimum(10, lengths - batch.timesteps[:, 0])
    check_rows_against_episodes(dataset, batch, expected)
    assert (expected < 10).any() and (expected == 10).any()  # both padded and full windows


def test_episodes_in_proportion_to_length_and_uniform_starts():
    dataset = labelled_dataset(lengths=(1, 99))
    sampler = WindowSampler(dataset, context_len=5, batch_size=50_000, seed=0)
    batch = sampler.sample()
    from_long = np.round(batch.states[:, 0, 0]) == 1
    share, sigma = from_long.mean(), np.sqrt(0.99 * 0.01 / 50_000)
    assert abs(share - 0.99) < 5 * sigma
    counts = np.bincount(batch.timesteps[from_long, 0], minlength=99)
    expected = from_long.sum() / 99
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_same_seed_same_batches_and_state_dict_resumes():
    dataset = labelled_dataset()

    def make(seed: int) -> WindowSampler:
        return WindowSampler(dataset, context_len=6, batch_size=8, seed=seed)

    a, b = make(11), make(11)
    for _ in range(3):
        np.testing.assert_array_equal(a.sample().timesteps, b.sample().timesteps)
    assert not np.array_equal(make(11).sample().states, make(12).sample().states)

    state = a.state_dict()
    expected = [a.sample() for _ in range(3)]
    resumed = make(999)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample()
        np.testing.assert_array_equal(got.states, want.states)
        np.testing.assert_array_equal(got.valid, want.valid)


def test_episode_sampler_prefixes_pad_to_the_longest():
    dataset = labelled_dataset()
    sampler = EpisodeSampler(dataset, max_len=30, batch_size=64, seed=5)
    batch = sampler.sample()
    lengths = np.minimum(np.array(LENGTHS)[np.round(batch.states[:, 0, 0]).astype(int)], 30)
    assert batch.states.shape[1] == lengths.max()
    assert (batch.timesteps[:, 0] == 0).all()
    check_rows_against_episodes(dataset, batch, lengths)


def test_packed_batch_is_the_padded_batch_without_pads():
    dataset = labelled_dataset()
    padded = EpisodeSampler(dataset, max_len=30, batch_size=16, seed=9).sample()
    packed = EpisodeSampler(dataset, max_len=30, batch_size=16, seed=9).sample_packed()
    lengths = padded.valid.sum(1)
    assert packed.cu_seqlens.dtype == np.int64
    np.testing.assert_array_equal(packed.cu_seqlens, np.concatenate([[0], np.cumsum(lengths)]))
    total = int(lengths.sum())
    assert packed.states.shape == (1, total, 3) and packed.valid.all()
    for field in ("states", "actions", "returns_to_go", "timesteps"):
        np.testing.assert_array_equal(
            getattr(packed, field)[0], getattr(padded, field)[padded.valid]
        )
    starts = packed.cu_seqlens[:-1]
    assert (packed.timesteps[0, starts] == 0).all()


def test_episode_sampler_state_dict_resumes():
    dataset = labelled_dataset()
    a = EpisodeSampler(dataset, max_len=12, batch_size=4, seed=0)
    a.sample()
    state = a.state_dict()
    want = a.sample_packed()
    b = EpisodeSampler(dataset, max_len=12, batch_size=4, seed=1)
    b.load_state_dict(state)
    got = b.sample_packed()
    np.testing.assert_array_equal(got.cu_seqlens, want.cu_seqlens)
    np.testing.assert_array_equal(got.states, want.states)


def test_to_torch_keeps_values_and_dtypes():
    torch = pytest.importorskip("torch")
    batch = WindowSampler(labelled_dataset(), context_len=5, batch_size=4, seed=0)
    batch = batch.sample()
    tensors = batch.to_torch("cpu")
    assert tensors.states.dtype == torch.float32 and tensors.timesteps.dtype == torch.int64
    assert tensors.valid.dtype == torch.bool
    np.testing.assert_array_equal(tensors.returns_to_go.numpy(), batch.returns_to_go)
    packed = EpisodeSampler(labelled_dataset(), max_len=5, batch_size=3, seed=0)
    assert packed.sample_packed().to_torch().cu_seqlens.dtype == torch.int64


@pytest.mark.parametrize("kwargs", [{"context_len": 0}, {"batch_size": 0}])
def test_bad_sampler_settings(kwargs):
    settings = {"context_len": 4, "batch_size": 2, "seed": 0} | kwargs
    with pytest.raises(UserError, match=next(iter(kwargs))):
        WindowSampler(labelled_dataset(), **settings)
