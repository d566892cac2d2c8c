"""Minari datasets: episodes with T+1 observations, read through `minari.load_dataset`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from flowrl.data.episodes import Episode, EpisodeDataset
from flowrl.data.reference import check_reference_scores
from flowrl.data.validate import check_array, fail
from flowrl.errors import UserError, check_name

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
DEFAULT_REMOTE = "hf://farama-minari"
DOWNLOAD_HINT = (
    "--set data.download=true (flowrl train), --download (flowrl datasets show), "
    "download=True (Python)"
)


def minari_root() -> Path:
    """Where Minari keeps datasets: `MINARI_DATASETS_PATH`, default `~/.minari/datasets`."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def is_minari_id(spec: str) -> bool:
    """Whether `spec` has the form `(namespace/)name-vN` that Minari accepts."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(spec)
    return match is not None and match["version"] is not None


def check_minari_id(dataset_id: str, what: str = "dataset id") -> str:
    """`dataset_id` if it has Minari's form `(namespace/)name-vN` and each of its parts is a
    plain folder name (`check_name`: printable, no leading '.', at most 200 bytes)."""
    if not is_minari_id(dataset_id):
        raise UserError(f"{what} {dataset_id!r} is not a Minari id: use (namespace/)name-vN")
    for part in dataset_id.split("/"):
        check_name(part, f"{what} {dataset_id[:80]!r}: part")
    return dataset_id


def list_minari() -> dict[str, dict]:
    """Local Minari datasets, each checked against its files (`check_minari_files`):
    id -> {"episodes", "steps", "damaged"}, `damaged` saying what is wrong (counts None) or
    None. Hidden folders (a collection's `.tmp-*`) are not datasets."""
    root = minari_root()
    if not root.is_dir():
        return {}
    found: dict[str, dict] = {}
    for data_path in sorted(root.rglob("data")):
        relative = data_path.parent.relative_to(root)
        if not data_path.is_dir() or any(part.startswith(".") for part in relative.parts):
            continue
        try:
            found[relative.as_posix()] = {**check_minari_files(data_path), "damaged": None}
        except UserError as err:
            found[relative.as_posix()] = {"episodes": None, "steps": None, "damaged": str(err)}
    return found


def check_minari_files(data_path: Path) -> dict[str, int]:
    """{"episodes", "steps"} of the Minari dataset in `data_path` (its `data` folder): its
    metadata read, its counts non-negative integers, and its HDF5 file opened and holding
    those counts. A UserError naming the file and what is wrong otherwise."""
    path = data_path / "metadata.json"
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise UserError(f"{path}: unreadable metadata ({reason})") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: unreadable metadata (a {type(metadata).__name__}, not a mapping)")
    counts = {}
    for key in ("total_episodes", "total_steps"):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"{path}: {key}={value!r}: expected a count >= 0")
        counts[key] = value
    _check_main_data(data_path / "main_data.hdf5", counts["total_episodes"], counts["total_steps"])
    return {"episodes": counts["total_episodes"], "steps": counts["total_steps"]}


def _download(dataset_id: str) -> None:
    import minari

    remote = os.environ.get("MINARI_REMOTE", DEFAULT_REMOTE)
    try:
        minari.download_dataset(dataset_id)
    except Exception as err:  # any failure of the remote: network, missing client, unknown id
        raise UserError(
            f"could not download Minari dataset {dataset_id!r} from {remote}: "
            f"{type(err).__name__}: {err}"
        ) from err


def _env_spec(metadata: dict) -> tuple[str | None, dict[str, Any]]:
    """The env to evaluate in and its keyword arguments: the dataset's eval env if it names
    one, else its own env."""
    for key in ("eval_env_spec", "env_spec"):
        spec = metadata.get(key)
        if isinstance(spec, str):
            spec = json.loads(spec)
            kwargs = dict(spec.get("kwargs") or {})
            kwargs.pop("render_mode", None)  # how the data was watched, not part of the task
            return spec.get("id"), kwargs
    return None, {}


def _diagnose(file: Path, index: int, err: Exception) -> UserError:
    """Names what is wrong with episode `index` after minari failed to read it."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
    try:
        with h5py.File(file, "r") as h5:
            group = f"episode_{index}"
            if group not in h5 or not isinstance(h5[group], h5py.Group):
                return fail(file, group, "missing or not a group")
            for key in EPISODE_KEYS:
                if key not in h5[group]:
                    return fail(file, f"{group}/{key}", "missing")
    except (OSError, RuntimeError, KeyError, ValueError):
        pass  # the file itself is damaged: the original error says more
    return UserError(f"{file}: episode {index}: unreadable ({type(err).__name__}: {reason})")


def _check_main_data(file: Path, total_episodes: int, total_steps: int | None = None) -> None:
    """A readable HDF5 file holding as many episodes (and steps: actions, if `total_steps`
    is given) as the metadata counts."""
    if not file.is_file():  # another storage format (arrow): minari checks it
        return
    try:
        with h5py.File(file, "r") as h5:
            lengths = [_steps(h5[key]) for key in h5 if key.startswith("episode_")]
            held = len(lengths)
            steps = None if None in lengths else sum(lengths)
    except (OSError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"{file}: not a readable HDF5 file (truncated or damaged?): {reason}"
        ) from None
    if held != total_episodes:
        raise UserError(
            f"{file}: the metadata counts {total_episodes} episodes (total_episodes) but the "
            f"file holds {held}"
        )
    if total_steps is not None and steps is not None and steps != total_steps:
        raise UserError(
            f"{file}: the metadata counts {total_steps} steps (total_steps) but the file "
            f"holds {steps}"
        )


def _steps(episode: object) -> int | None:
    """An episode group's steps (its actions' length); None where it has none to count (its
    loading names what is missing)."""
    if not isinstance(episode, h5py.Group) or not isinstance(episode.get("actions"), h5py.Dataset):
        return None
    shape = episode["actions"].shape
    return shape[0] if shape else None


def _episode(file: Path, data, discrete: bool) -> Episode:
    """Checks one minari EpisodeData and drops the final observation (T+1 -> T).

    Discrete actions stay integer indices, one per step."""
    where = f"episode_{data.id}"
    rewards = check_array(file, f"{where}/rewards", np.asarray(data.rewards), ndim=1)
    steps = len(rewards)
    if steps == 0:
        raise fail(file, f"{where}/rewards", "empty episode")
    observations = check_array(
        file, f"{where}/observations", np.asarray(data.observations), ndim=2, length=steps + 1
    )
    arrays = {
        key: check_array(
            file, f"{where}/{key}", np.asarray(getattr(data, key)), ndim=nd, length=steps
        )
        for key, nd in (("actions", 1 if discrete else 2), ("terminations", 1), ("truncations", 1))
    }
    return Episode(observations=observations[:-1], rewards=rewards, **arrays)


def read_minari(dataset_id: str, *, download: bool = False) -> EpisodeDataset:
    """Loads a local Minari dataset (downloading it first only if `download`)."""
    import gymnasium as gym
    import minari

    check_minari_id(dataset_id)
    data_path = minari_root() / dataset_id / "data"
    if not data_path.is_dir():
        if not download:
            raise UserError(
                f"no local Minari dataset {dataset_id!r} (looked in {data_path.parent}; "
                f"MINARI_DATASETS_PATH={os.environ.get('MINARI_DATASETS_PATH', '<unset>')}); "
                f"to fetch it: {DOWNLOAD_HINT}"
            )
        _download(dataset_id)
    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception as err:  # minari raises ValueError, KeyError, AssertionError on bad metadata
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{data_path}: not a readable Minari dataset ({reason})") from None
    observation_space, action_space = dataset.observation_space, dataset.action_space
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
        raise UserError(
            f"{data_path}: observation space {observation_space} is not a flat Box; flowrl "
            "needs one"
        )
    discrete = isinstance(action_space, gym.spaces.Discrete)
    if discrete and action_space.start != 0:
        raise UserError(f"{data_path}: action space {action_space} does not start at 0")
    flat_box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if not (discrete or flat_box):
        raise UserError(
            f"{data_path}: action space {action_space} is neither a flat Box nor Discrete"
        )
    if dataset.total_episodes == 0:
        raise UserError(f"{data_path}: Minari dataset {dataset_id!r} holds no episodes")

    file = data_path / "main_data.hdf5"
    _check_main_data(file, dataset.total_episodes)
    episodes: list[Episode] = []
    bar = tqdm(total=dataset.total_episodes, desc=f"load {dataset_id}", leave=False, disable=None)
    try:
        for data in dataset.iterate_episodes():
            episodes.append(_episode(file, data, discrete))
            bar.update()
    except (KeyError, AssertionError, OSError, RuntimeError, ValueError, TypeError) as err:
        if isinstance(err, UserError):
            raise
        raise _diagnose(file, len(episodes), err) from None
    finally:
        bar.close()

    metadata = dataset.storage.metadata
    env_id, env_kwargs = _env_spec(metadata)
    refs = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    check_reference_scores(*refs, f"{data_path}: metadata ref_min_score, ref_max_score")
    return EpisodeDataset(
        dataset_id,
        episodes,
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        env_id=env_id,
        env_kwargs=env_kwargs,
        discrete_actions=int(action_space.n) if discrete else None,
    )
