"""Resident samplers (dataset on the training device): the host samplers' batches exactly,
their distribution by a chi-square test, their resumable state."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from flowrl.data import EpisodeSampler, WindowSampler
from flowrl.data.resident import ResidentEpisodeSampler, ResidentWindowSampler
from tests.data.test_sampler import LENGTHS, check_rows_against_episodes, labelled_dataset

Z = 4.5  # one-sided normal quantile of the chi-square tests: a false alarm about 3e-6


def host(batch):
    """A tensor batch as the numpy batch the host samplers give."""
    return type(batch)(**{f.name: getattr(batch, f.name).cpu().numpy() for f in fields(batch)})


def assert_same_batch(got, want):
    assert type(got) is type(want)
    for f in fields(want):
        value = getattr(got, f.name)
        assert isinstance(value, torch.Tensor), f.name
        np.testing.assert_array_equal(value.cpu().numpy(), getattr(want, f.name), f.name)
        assert value.cpu().numpy().dtype == getattr(want, f.name).dtype, f.name


def chi_square_limit(df: int) -> float:
    """The chi-square quantile at one-sided normal quantile Z (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + Z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = counts.sum() * probabilities
    return float(((counts - expected) ** 2 / expected).sum())


def fits(counts: np.ndarray, probabilities: np.ndarray) -> bool:
    """Pearson's chi-square test of `counts` against `probabilities` at level Z."""
    return chi_square(counts, probabilities) < chi_square_limit(len(counts) - 1)


def window_draws(sampler: ResidentWindowSampler, batches: int):
    """(episode, start) of each window of `batches` batches, read off the labelled states."""
    episodes, starts = [], []
    for _ in range(batches):
        batch = sampler.sample()
        episodes.append(batch.states[:, 0, 0].round().long())
        starts.append(batch.timesteps[:, 0])
    return torch.cat(episodes).numpy(), torch.cat(starts).numpy()


@pytest.mark.parametrize("seed", [0, 7])
def test_window_batches_equal_the_host_samplers(seed):
    dataset = labelled_dataset()
    want = WindowSampler(dataset, context_len=10, batch_size=64, seed=seed)
    got = ResidentWindowSampler(dataset, context_len=10, batch_size=64, seed=seed, device="cpu")
    for _ in range(5):
        assert_same_batch(got.sample(), want.sample())


def test_episode_batches_padded_and_packed_equal_the_host_samplers():
    dataset = labelled_dataset()
    want = EpisodeSampler(dataset, max_len=30, batch_size=16, seed=4)
    got = ResidentEpisodeSampler(dataset, max_len=30, batch_size=16, seed=4, device="cpu")
    for _ in range(3):
        assert_same_batch(got.sample(), want.sample())
        assert_same_batch(got.sample_packed(), want.sample_packed())


def test_windows_match_their_episodes_and_pad_right():
    dataset = labelled_dataset()
    sampler = ResidentWindowSampler(dataset, context_len=10, batch_size=256, seed=3, device="cpu")
    batch = host(sampler.sample())
    lengths = np.array(LENGTHS)[np.round(batch.states[:, 0, 0]).astype(int)]
    expected = np.minimum(10, lengths - batch.timesteps[:, 0])
    check_rows_against_episodes(dataset, batch, expected)
    assert (expected < 10).any() and (expected == 10).any()


def test_window_episodes_in_proportion_to_length_and_starts_uniform():
    """Chi-square: the episode of a window comes with probability length / total steps, its
    start uniformly from the episode's steps."""
    lengths = np.array(LENGTHS)
    sampler = ResidentWindowSampler(
        labelled_dataset(), context_len=5, batch_size=4096, seed=123, device="cpu"
    )
    episodes, starts = window_draws(sampler, 10)
    counts = np.bincount(episodes, minlength=len(lengths))
    assert fits(counts, lengths / lengths.sum())
    for index, length in enumerate(lengths):
        if length > 1:
            here = np.bincount(starts[episodes == index], minlength=length)
            assert fits(here, np.full(length, 1 / length)), index


def test_the_chi_square_test_rejects_episodes_drawn_uniformly():
    """The test can fail: episodes drawn uniformly (as in episode mode) instead of by length."""
    lengths = np.array(LENGTHS)
    sampler = ResidentEpisodeSampler(
        labelled_dataset(), max_len=5, batch_size=4096, seed=123, device="cpu"
    )
    drawn = [sampler.sample().states[:, 0, 0].round().long() for _ in range(10)]
    counts = np.bincount(torch.cat(drawn).numpy(), minlength=len(lengths))
    assert not fits(counts, lengths / lengths.sum())
    assert fits(counts, np.full(len(lengths), 1 / len(lengths)))


def test_episode_prefixes_from_uniform_episodes_and_match_them():
    dataset = labelled_dataset()
    sampler = ResidentEpisodeSampler(dataset, max_len=30, batch_size=64, seed=5, device="cpu")
    batch = host(sampler.sample())
    lengths = np.minimum(np.array(LENGTHS)[np.round(batch.states[:, 0, 0]).astype(int)], 30)
    assert batch.states.shape[1] == lengths.max() and (batch.timesteps[:, 0] == 0).all()
    check_rows_against_episodes(dataset, batch, lengths)
    packed = sampler.sample_packed()
    firsts = packed.cu_seqlens[:-1]
    assert (packed.timesteps[0, firsts] == 0).all()
    assert int(packed.cu_seqlens[-1]) == packed.states.shape[1]


def test_state_is_the_host_samplers_and_resumes_exactly():
    dataset = labelled_dataset()
    resident = ResidentWindowSampler(dataset, context_len=6, batch_size=8, seed=11, device="cpu")
    resident.sample()
    state = resident.state_dict()
    want = [resident.sample() for _ in range(3)]
    hosted = WindowSampler(dataset, context_len=6, batch_size=8, seed=0)
    hosted.load_state_dict(state)  # a checkpoint of either kind resumes the other
    again = ResidentWindowSampler(dataset, context_len=6, batch_size=8, seed=0, device="cpu")
    again.load_state_dict(state)
    for batch in want:
        assert_same_batch(batch, hosted.sample())
        assert_same_batch(again.sample(), host(batch))
    again.reseed(11)
    assert_same_batch(
        again.sample(), WindowSampler(dataset, context_len=6, batch_size=8, seed=11).sample()
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_equal_the_host_samplers():
    dataset = labelled_dataset()
    want = WindowSampler(dataset, context_len=10, batch_size=64, seed=1)
    got = ResidentWindowSampler(dataset, context_len=10, batch_size=64, seed=1, device="cuda")
    batch = got.sample()
    assert batch.states.device.type == "cuda"
    assert_same_batch(batch, want.sample())
    packed = EpisodeSampler(dataset, max_len=30, batch_size=16, seed=2)
    got = ResidentEpisodeSampler(dataset, max_len=30, batch_size=16, seed=2, device="cuda")
    assert_same_batch(got.sample_packed(), packed.sample_packed())
