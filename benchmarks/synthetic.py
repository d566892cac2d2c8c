"""Synthetic Hopper-shaped data for the speed benchmarks: shapes and lengths are all the
speed of a training step depends on."""

from __future__ import annotations

OBS, ACT = 11, 3  # Hopper's observation and action sizes


def synthetic_dataset(episodes: int, length: int):
    """`episodes` random episodes of `length` steps, as an `EpisodeDataset`."""
    import numpy as np

    from flowrl.data import Episode, EpisodeDataset

    rng = np.random.default_rng(0)
    return EpisodeDataset(
        f"synthetic hopper {episodes}x{length}",
        [
            Episode(
                observations=rng.normal(size=(length, OBS)),
                actions=rng.uniform(-1, 1, size=(length, ACT)),
                rewards=rng.uniform(0, 3, size=length),
                terminations=np.zeros(length, bool),
                truncations=np.arange(length) == length - 1,
            )
            for _ in range(episodes)
        ],
    )
