"""Offline datasets: loaders (Minari, D4RL), training-batch samplers and dataset collection."""

from flowrl.data.batch import Batch, PackedBatch
from flowrl.data.collect import DEFAULT_DATASET_ID, collect_dataset, load_or_collect
from flowrl.data.episodes import Episode, EpisodeDataset
from flowrl.data.loader import load_dataset
from flowrl.data.sampler import EpisodeSampler, WindowSampler

__all__ = [
    "DEFAULT_DATASET_ID",
    "Batch",
    "Episode",
    "EpisodeDataset",
    "EpisodeSampler",
    "PackedBatch",
    "WindowSampler",
    "collect_dataset",
    "load_dataset",
    "load_or_collect",
]
