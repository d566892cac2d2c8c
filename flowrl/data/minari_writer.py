"""Writes Minari datasets atomically: built in a hidden folder beside the target, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from flowrl.data.minari_source import check_minari_id, minari_root
from flowrl.errors import UserError


def _ensure_namespace(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces

    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)


def write_minari_dataset(
    dataset_id: str,
    buffers: Sequence[Any],
    *,
    env_spec: gym.envs.registration.EnvSpec,
    observation_space: gym.Space,
    action_space: gym.Space,
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Writes `buffers` (minari EpisodeBuffers, T+1 observations each) as `dataset_id`.

    Nothing appears at the target until the whole dataset is on disk; an interrupted write
    leaves at most a hidden `.<name>.tmp-*` folder, which Minari's listing skips.
    """
    from minari import __version__ as minari_version
    from minari.dataset.minari_storage import MinariStorage

    check_minari_id(dataset_id)
    if not buffers:
        raise UserError(f"refusing to write Minari dataset {dataset_id!r} without episodes")
    target = minari_root() / dataset_id
    if target.exists() and not overwrite:
        raise UserError(f"Minari dataset {dataset_id!r} already exists at {target} (overwrite it?)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset should read like any other
    try:
        storage = MinariStorage.new(
            staging / "data",
            observation_space=observation_space,
            action_space=action_space,
            env_spec=env_spec,
        )
        storage.update_metadata(
            {"dataset_id": dataset_id, "minari_version": minari_version, **metadata}
        )
        storage.update_episodes(buffers)
        _ensure_namespace(dataset_id)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
