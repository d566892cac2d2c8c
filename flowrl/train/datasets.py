"""The training dataset: loaded by spec, or collected first for the built-in demo set."""

from __future__ import annotations

from flowrl.data import EpisodeDataset, collect_dataset, load_dataset
from flowrl.data.minari_source import minari_root
from flowrl.envs.masked import mask_dataset
from flowrl.errors import UserError
from flowrl.train.config import QUICKSTART_DATASET, DataConfig


def load_training_dataset(cfg: DataConfig, *, progress: bool = True) -> EpisodeDataset:
    """The dataset `cfg` names, under `cfg.observation_mask` when it is P or V."""
    dataset = _load(cfg, progress=progress)
    if dataset.discrete_actions is not None:
        raise UserError(
            f"dataset {dataset.name!r} has discrete actions (Discrete({dataset.discrete_actions}))"
            "; flowrl's agents train on continuous actions only so far"
        )
    if cfg.observation_mask != "none":
        dataset = mask_dataset(dataset, cfg.observation_mask)
    return dataset


def _load(cfg: DataConfig, *, progress: bool) -> EpisodeDataset:
    try:
        return load_dataset(cfg.dataset, download=cfg.download)
    except UserError:
        if cfg.dataset != QUICKSTART_DATASET or (minari_root() / QUICKSTART_DATASET).exists():
            raise  # a quickstart set that is there but broken: its own error, no re-collection
    print(f"dataset {QUICKSTART_DATASET} is not here yet: collecting it (scripted Pendulum-v1)")
    return collect_dataset(dataset_id=QUICKSTART_DATASET, progress=progress)
