"""A dataset's fingerprint: counts plus a hash of its arrays, to notice a changed dataset."""

from __future__ import annotations

import hashlib

import numpy as np

from flowrl.data.episodes import EpisodeDataset
from flowrl.errors import UserError

ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")


def dataset_fingerprint(dataset: EpisodeDataset) -> dict[str, int | str]:
    """{'episodes', 'steps', 'sha256'}: the hash covers every episode's arrays, in order."""
    digest = hashlib.sha256()
    for episode in dataset.episodes:
        for key in ARRAYS:
            array = np.ascontiguousarray(getattr(episode, key))
            digest.update(f"{key}{array.dtype.str}{array.shape}".encode())
            digest.update(array.data)
    return {
        "episodes": dataset.num_episodes,
        "steps": dataset.num_steps,
        "sha256": digest.hexdigest(),
    }


def fingerprint_change(saved: dict, current: dict) -> str | None:
    """What differs between two fingerprints, in words; None when they are equal."""
    if saved == current:
        return None
    changes = [
        f"{key} {saved.get(key)} -> {current[key]}"
        for key in ("episodes", "steps")
        if saved.get(key) != current[key]
    ]
    return ", ".join(changes) or "same size, different contents"


def check_same_dataset(saved: dict | None, current: dict, name: str, *, allow: bool) -> None:
    """A UserError when a resumed run's dataset is not the one its checkpoint was trained on."""
    change = None if saved is None else fingerprint_change(saved, current)
    if change is None or allow:
        return
    raise UserError(
        f"--resume: dataset {name!r} changed since the checkpoint was written ({change}); "
        "the observation statistics would change under the model. Pass "
        "--allow-dataset-change to continue on the new data anyway"
    )
