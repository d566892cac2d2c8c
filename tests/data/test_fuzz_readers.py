"""Property-based fuzzing of the HDF5 (D4RL) and Minari readers: random shapes, dtypes, NaNs,
missing keys, truncations and flipped bytes. Every input either loads or raises UserError."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_raw_episodes, write_minari
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowrl.data import EpisodeDataset, load_dataset
from flowrl.errors import UserError

FUZZ = settings(
    max_examples=150,
    deadline=None,  # file I/O on a shared machine: timings vary
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure reproduces
)
DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool",
          "complex64", "S4"]  # fmt: skip
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@st.composite
def arrays(draw, length: int) -> np.ndarray:
    """An array whose rank, sizes and dtype are usually, but not always, sensible."""
    ndim = draw(st.sampled_from([1, 2, 2, 2, 0, 3]))
    first = draw(st.sampled_from([length, length, length - 1, length + 2, 0]))
    rest = draw(st.lists(st.integers(0, 4), min_size=2, max_size=2))
    shape = (max(first, 0), *rest)[:ndim]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(scale=3, size=shape)
    if dtype.kind == "f" and values.size and draw(st.booleans()):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    if dtype.kind == "S":
        return np.full(shape, b"ab", dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


def check(load) -> None:
    """The property: a dataset, or the library's own error, nothing else."""
    try:
        dataset = load()
    except UserError as err:
        assert str(err)
        return
    assert isinstance(dataset, EpisodeDataset)
    assert dataset.num_steps > 0 and dataset.obs_dim > 0 and dataset.act_dim > 0
    assert all(np.isfinite(ep.observations).all() for ep in dataset.episodes)


@contextlib.contextmanager
def env_var(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name)
        else:
            os.environ[name] = old


@st.composite
def d4rl_files(draw) -> dict:
    length = draw(st.integers(1, 12))
    keys = {}
    for key in D4RL_KEYS:
        kind = draw(st.sampled_from(["valid"] * 6 + ["random"] * 3 + ["missing", "group"]))
        keys[key] = (kind, draw(arrays(length)))
    cut = draw(st.floats(0, 1)) if draw(st.integers(0, 7)) == 0 else None
    return {"length": length, "keys": keys, "cut": cut}


def valid_d4rl(key: str, length: int, rng: np.random.Generator) -> np.ndarray:
    if key in ("terminals", "timeouts"):
        return rng.random(length) < 0.3
    width = {"observations": 3, "actions": 2}.get(key)
    shape = (length,) if width is None else (length, width)
    return rng.normal(size=shape).astype(np.float32)


@FUZZ
@given(spec=d4rl_files())
def test_d4rl_reader_loads_or_raises_user_error(spec):
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.hdf5"
        with h5py.File(path, "w") as file:
            for key, (kind, random_array) in spec["keys"].items():
                if kind == "valid":
                    file[key] = valid_d4rl(key, spec["length"], rng)
                elif kind == "random":
                    file[key] = random_array
                elif kind == "group":
                    file.create_group(key)
        if spec["cut"] is not None:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * spec["cut"])])
        check(lambda: load_dataset(str(path)))


# ---------------------------------------------------------------- Minari
@pytest.fixture(scope="module")
def minari_base(tmp_path_factory) -> Path:
    """One valid Minari dataset (5 episodes), copied before each example damages it."""
    root = tmp_path_factory.mktemp("minari-base")
    with env_var("MINARI_DATASETS_PATH", str(root)):
        write_minari("fuzz/base-v0", make_raw_episodes(np.random.default_rng(0)))
    return root / "fuzz" / "base-v0"


EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


@st.composite
def minari_damage(draw) -> dict:
    kind = draw(st.sampled_from(["array", "array", "array", "missing", "count", "cut", "flip"]))
    episode = draw(st.integers(0, 4))
    return {
        "kind": kind,
        "episode": episode,
        "key": draw(st.sampled_from(EPISODE_KEYS)),
        "array": draw(arrays(draw(st.integers(1, 13)))),
        "count": draw(st.sampled_from([0, 1, 4, 6, 100])),
        "fraction": draw(st.floats(0, 1)),
        "flips": draw(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=20)),
    }


def damage_minari(data: Path, spec: dict) -> None:
    main_data = data / "main_data.hdf5"
    where = f"episode_{spec['episode']}/{spec['key']}"
    if spec["kind"] in ("array", "missing"):
        with h5py.File(main_data, "a") as file:
            del file[where]
            if spec["kind"] == "array":
                file[where] = spec["array"]
    elif spec["kind"] == "count":
        metadata = json.loads((data / "metadata.json").read_text())
        metadata["total_episodes"] = spec["count"]
        (data / "metadata.json").write_text(json.dumps(metadata))
    elif spec["kind"] == "cut":
        raw = main_data.read_bytes()
        main_data.write_bytes(raw[: int(len(raw) * spec["fraction"])])
    else:
        raw = bytearray(main_data.read_bytes())
        for at, mask in spec["flips"]:
            raw[min(int(at * len(raw)), len(raw) - 1)] ^= mask
        main_data.write_bytes(bytes(raw))


@FUZZ
@given(spec=minari_damage())
def test_minari_reader_loads_or_raises_user_error(minari_base, spec):
    with tempfile.TemporaryDirectory() as tmp, env_var("MINARI_DATASETS_PATH", tmp):
        target = Path(tmp) / "fuzz" / "case-v0"
        shutil.copytree(minari_base, target)
        metadata = json.loads((target / "data" / "metadata.json").read_text())
        metadata["dataset_id"] = "fuzz/case-v0"
        (target / "data" / "metadata.json").write_text(json.dumps(metadata))
        damage_minari(target / "data", spec)
        check(lambda: load_dataset("fuzz/case-v0"))
