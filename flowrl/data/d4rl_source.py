"""D4RL datasets: flat HDF5 arrays cut into episodes at `terminals` or `timeouts`."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from flowrl.data.episodes import Episode, EpisodeDataset
from flowrl.data.minari_source import DOWNLOAD_HINT
from flowrl.data.reference import D4RL_ENV_IDS, D4RL_REFERENCE, parse_d4rl_name
from flowrl.data.validate import check_array, fail
from flowrl.errors import UserError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_{version}/{file}"


def d4rl_dir() -> Path:
    """Where D4RL keeps its files: `D4RL_DATASET_DIR`, default `~/.d4rl/datasets`."""
    return Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser()


def d4rl_file_names(name: str) -> list[str]:
    """File names D4RL gives a dataset (`hopper-medium-replay-v2` -> hopper_medium_replay-v2)."""
    parsed = parse_d4rl_name(name)
    if parsed is None:
        return []
    env, kind, version = parsed
    stem = f"{env}_{kind.replace('-', '_')}"
    official = f"{stem}-{version}.hdf5" if version not in (None, "v0") else f"{stem}.hdf5"
    return list(dict.fromkeys([official, f"{name}.hdf5"]))


def find_d4rl_file(name: str, *, download: bool = False) -> Path:
    """The local file of a D4RL name; fetched through the `d4rl` package only if asked."""
    names = d4rl_file_names(name)
    candidates = [d4rl_dir() / file for file in names]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    version = parse_d4rl_name(name)[2] or "v0"
    url = D4RL_URL.format(version=version, file=names[0])
    if not download:
        raise UserError(
            f"D4RL dataset {name!r} not found (looked for {looked}); fetch {url} into "
            f"{d4rl_dir()} (set D4RL_DATASET_DIR to move it) or ask for a download: "
            f"{DOWNLOAD_HINT}"
        )
    try:
        from d4rl import infos, offline_env
    except Exception as err:  # d4rl needs mujoco-py and old gym: it rarely imports today
        raise UserError(
            f"D4RL dataset {name!r} not found (looked for {looked}) and the d4rl package, which "
            f"downloads it, does not import ({err}); fetch {url} into {d4rl_dir()}"
        ) from err
    if name not in infos.DATASET_URLS:
        raise UserError(f"d4rl knows no dataset named {name!r}")
    try:
        return Path(offline_env.download_dataset_from_url(infos.DATASET_URLS[name]))
    except OSError as err:
        raise UserError(f"could not download D4RL dataset {name!r}: {err}") from err


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of episodes, ends exclusive; an unfinished tail is its own episode."""
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    starts = np.concatenate([[0], ends[:-1]])
    return starts, ends


def _read(file: h5py.File, path: Path, key: str) -> np.ndarray:
    if key not in file:
        raise fail(path, key, f"missing (a D4RL file needs {', '.join(REQUIRED_KEYS)})")
    if not isinstance(file[key], h5py.Dataset):
        raise fail(path, key, "is a group, expected an array")
    return np.asarray(file[key][()])


def _reference(name: str) -> tuple[tuple[float, float] | None, str | None]:
    parsed = parse_d4rl_name(name)
    if parsed is None:
        return None, None
    env = parsed[0]
    return D4RL_REFERENCE.get(env), D4RL_ENV_IDS.get(env)


def read_d4rl_file(path: str | Path, name: str | None = None) -> EpisodeDataset:
    """Reads one HDF5 file in D4RL's layout; `name` (else the file stem) picks reference returns."""
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: not a readable HDF5 file ({err})") from err
    with file:
        arrays = {key: _read(file, path, key) for key in REQUIRED_KEYS}
        steps = len(check_array(path, "observations", arrays["observations"], ndim=2))
        if steps == 0:
            raise UserError(f"{path}: key 'observations': empty, the dataset holds no steps")
        timeouts = _read(file, path, "timeouts") if "timeouts" in file else np.zeros(steps, bool)
    rewards = arrays["rewards"]
    if rewards.ndim == 2 and rewards.shape[1] == 1:
        rewards = rewards[:, 0]
    observations = check_array(path, "observations", arrays["observations"], ndim=2)
    actions = check_array(path, "actions", arrays["actions"], ndim=2, length=steps)
    rewards = check_array(path, "rewards", rewards, ndim=1, length=steps)
    terminals = check_array(path, "terminals", arrays["terminals"], ndim=1, length=steps)
    timeouts = check_array(path, "timeouts", timeouts, ndim=1, length=steps)
    terminals, timeouts = terminals.astype(bool), timeouts.astype(bool)

    starts, ends = episode_bounds(terminals, timeouts)
    episodes = []
    for start, end in zip(starts, ends, strict=True):
        truncations = timeouts[start:end].copy()
        if end == steps and not (terminals[-1] or timeouts[-1]):
            truncations[-1] = True  # the file stops mid-episode
        episodes.append(
            Episode(
                observations=observations[start:end],
                actions=actions[start:end],
                rewards=rewards[start:end],
                terminations=terminals[start:end],
                truncations=truncations,
            )
        )
    name = name or path.stem
    refs, env_id = _reference(name)
    return EpisodeDataset(
        name,
        episodes,
        ref_min_score=refs[0] if refs else None,
        ref_max_score=refs[1] if refs else None,
        env_id=env_id,
    )


def list_d4rl() -> list[dict]:
    """HDF5 files under `d4rl_dir()`: name, path, steps and episodes (None if unreadable,
    with `damaged` saying why; None if it is not)."""
    entries = []
    for path in sorted(d4rl_dir().glob("*.hdf5")):
        entry = {"name": path.stem, "path": str(path), "steps": None, "episodes": None}
        try:
            with h5py.File(path, "r") as file:
                ends = np.asarray(file["terminals"][()], bool)
                if "timeouts" in file:
                    ends |= np.asarray(file["timeouts"][()], bool)
        except (OSError, KeyError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            entries.append({**entry, "damaged": f"{path}: unreadable ({reason})"})
            continue
        entry["damaged"] = None
        entry["steps"] = len(ends)
        entry["episodes"] = len(episode_bounds(ends, np.zeros_like(ends))[0]) if len(ends) else 0
        entries.append(entry)
    return entries
