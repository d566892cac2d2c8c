"""`load_dataset`: one entry point for D4RL files, D4RL names and Minari ids."""

from __future__ import annotations

from pathlib import Path

from flowrl.data.d4rl_source import find_d4rl_file, read_d4rl_file
from flowrl.data.episodes import EpisodeDataset
from flowrl.data.minari_source import is_minari_id, minari_root, read_minari
from flowrl.data.reference import parse_d4rl_name
from flowrl.errors import UserError

HDF5_SUFFIXES = (".hdf5", ".h5")


def load_dataset(spec: str, *, download: bool = False) -> EpisodeDataset:
    """Loads a dataset into memory; `a+b` loads the union of two (e.g. medium + expert).

    `spec` is, in this order: a path to an .hdf5/.h5 file in D4RL's layout; a D4RL name such
    as `hopper-medium-v2` (file under `D4RL_DATASET_DIR`); a Minari id such as
    `mujoco/hopper/medium-v0` (under `MINARI_DATASETS_PATH`). Nothing is downloaded unless
    `download` is true.
    """
    if "+" in spec:
        return union([load_dataset(part, download=download) for part in spec.split("+")], spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() in HDF5_SUFFIXES:
        if not path.is_file():
            raise UserError(f"dataset file {spec!r} does not exist")
        return read_d4rl_file(path)
    d4rl_name = parse_d4rl_name(spec)
    if d4rl_name is not None and d4rl_name[2] is not None:  # a versioned name, not a file stem
        return read_d4rl_file(find_d4rl_file(spec, download=download), name=spec)
    if is_minari_id(spec):
        return read_minari(spec, download=download)
    raise UserError(
        f"unknown dataset {spec!r}: not an .hdf5/.h5 file, not a D4RL name like hopper-medium-v2, "
        f"not a Minari id like mujoco/hopper/medium-v0 (local root {minari_root()})"
    )


def union(parts: list[EpisodeDataset], name: str) -> EpisodeDataset:
    """All episodes of `parts`, which must share an environment, the action space and
    reference returns.

    Their env keyword arguments may differ (T-Maze datasets of several corridor lengths
    train one agent on all of them); the union then evaluates with the last part's, so
    `tmaze-10+tmaze-100` evaluates at length 100.
    """
    first = parts[0]

    def key(part: EpisodeDataset) -> tuple:
        return (part.env_id, part.discrete_actions, part.ref_min_score, part.ref_max_score)

    for part in parts[1:]:
        if key(part) != key(first):
            raise UserError(
                f"cannot join {first.name!r} and {part.name!r}: their (env_id, "
                f"discrete_actions, reference returns) differ, {key(first)} vs {key(part)}"
            )
    return EpisodeDataset(
        name,
        [ep for part in parts for ep in part.episodes],
        ref_min_score=first.ref_min_score,
        ref_max_score=first.ref_max_score,
        env_id=first.env_id,
        env_kwargs=parts[-1].env_kwargs,
        discrete_actions=first.discrete_actions,
    )
