"""D4RL files: episode boundaries, name resolution, reference returns, bad input."""

from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest

from flowrl.cli import main
from flowrl.data import load_dataset
from flowrl.errors import UserError


def split_by_loop(terminals, timeouts):
    """Brute-force episode cut: (start, end) pairs, a step ending at a terminal or timeout."""
    bounds, start = [], 0
    for i in range(len(terminals)):
        if terminals[i] or timeouts[i]:
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(terminals):
        bounds.append((start, len(terminals)))
    return bounds


def test_terminals_and_timeouts_cut_episodes(tmp_path, write_d4rl):
    rng = np.random.default_rng(1)
    n = 40
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[[4, 20]] = True
    timeouts[[11, 30]] = True  # the file ends unfinished after step 30
    episodes = [
        {
            "observations": rng.normal(size=(n + 1, 3)).astype(np.float32),
            "actions": rng.normal(size=(n, 2)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminations": terminals,
            "truncations": timeouts,
        }
    ]
    path = write_d4rl(tmp_path / "flat.hdf5", episodes)
    dataset = load_dataset(str(path))

    bounds = split_by_loop(terminals, timeouts)
    assert [len(ep) for ep in dataset.episodes] == [end - start for start, end in bounds]
    for ep, (start, end) in zip(dataset.episodes, bounds, strict=True):
        np.testing.assert_array_equal(ep.observations, episodes[0]["observations"][start:end])
        np.testing.assert_array_equal(ep.actions, episodes[0]["actions"][start:end])
        np.testing.assert_array_equal(ep.rewards, episodes[0]["rewards"][start:end])
    # A timeout is not a termination.
    assert [bool(ep.terminations[-1]) for ep in dataset.episodes] == [
        True,
        False,
        True,
        False,
        False,
    ]
    assert [bool(ep.truncations[-1]) for ep in dataset.episodes] == [False, True, False, True, True]
    assert not any(
        ep.terminations[:-1].any() or ep.truncations[:-1].any() for ep in dataset.episodes
    )
    # The unfinished tail (steps 31..39) is kept, marked truncated.
    assert len(dataset.episodes[-1]) == n - 31


def test_d4rl_name_resolves_under_d4rl_dataset_dir(d4rl_dir, raw_episodes, write_d4rl):
    write_d4rl(d4rl_dir / "hopper_medium_replay-v2.hdf5", raw_episodes)
    dataset = load_dataset("hopper-medium-replay-v2")
    assert dataset.name == "hopper-medium-replay-v2"
    assert dataset.num_episodes == len(raw_episodes)
    assert dataset.env_id == "Hopper-v5"
    # D4RL's published hopper references (d4rl/infos.py).
    assert (dataset.ref_min_score, dataset.ref_max_score) == (-20.272305, 3234.3)
    expected = 100 * (1000.0 + 20.272305) / (3234.3 + 20.272305)
    np.testing.assert_allclose(dataset.normalized_score(1000.0), expected)


def test_h5_path_with_d4rl_stem_gets_env_and_references(tmp_path, raw_episodes, write_d4rl):
    path = write_d4rl(tmp_path / "walker2d_medium-v2.h5", raw_episodes)
    dataset = load_dataset(str(path))
    assert dataset.env_id == "Walker2d-v5"
    assert dataset.ref_min_score == pytest.approx(1.629008)


def test_unknown_d4rl_name_says_where_it_looked(d4rl_dir):
    with pytest.raises(UserError) as err:
        load_dataset("halfcheetah-expert-v2")
    message = str(err.value)
    assert "halfcheetah-expert-v2" in message
    assert str(d4rl_dir / "halfcheetah_expert-v2.hdf5") in message


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"actions": None}, "actions", "missing"),
        ({"terminals": None}, "terminals", "missing"),
        ("short_rewards", "rewards", "rows"),
        ("nan_observation", "observations", "NaN"),
        ("flat_observations", "observations", "2-D"),
    ],
)
def test_bad_files_name_file_key_and_problem(
    tmp_path, raw_episodes, write_d4rl, change, key, problem
):
    overrides = change if isinstance(change, dict) else {}
    path = write_d4rl(tmp_path / "bad.hdf5", raw_episodes, **overrides)
    with h5py.File(path, "a") as file:
        if change == "short_rewards":
            rewards = file["rewards"][:-3]
            del file["rewards"]
            file["rewards"] = rewards
        elif change == "nan_observation":
            file["observations"][5, 1] = np.nan
        elif change == "flat_observations":
            flat = file["observations"][:, 0]
            del file["observations"]
            file["observations"] = flat
    with pytest.raises(UserError) as err:
        load_dataset(str(path))
    message = str(err.value)
    assert str(path) in message
    assert repr(key) in message
    assert problem in message


def test_empty_file_is_an_error(tmp_path, write_d4rl, raw_episodes):
    empty = [{k: v[:0] for k, v in raw_episodes[0].items()}]
    empty[0]["observations"] = np.zeros((1, 4), np.float32)  # T+1 = 1 row -> 0 steps
    path = write_d4rl(tmp_path / "empty.hdf5", empty)
    with pytest.raises(UserError, match="no steps"):
        load_dataset(str(path))


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "junk.hdf5"
    path.write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        load_dataset(str(path))


def test_without_timeouts_episodes_end_at_terminals(tmp_path, raw_episodes, write_d4rl):
    path = write_d4rl(tmp_path / "old.hdf5", raw_episodes, timeouts=None)
    dataset = load_dataset(str(path))
    terminals = np.concatenate([raw["terminations"] for raw in raw_episodes])
    bounds = split_by_loop(terminals, np.zeros_like(terminals))
    assert [len(ep) for ep in dataset.episodes] == [end - start for start, end in bounds]


def test_download_without_the_d4rl_package_says_what_to_fetch(d4rl_dir):
    if importlib.util.find_spec("d4rl") is not None:
        pytest.skip("d4rl is installed: a download would go to the network")
    with pytest.raises(UserError) as err:
        load_dataset("hopper-medium-v2", download=True)
    assert "d4rl package" in str(err.value)
    assert "gym_mujoco_v2/hopper_medium-v2.hdf5" in str(err.value)


def test_datasets_list_shows_d4rl_files(d4rl_dir, minari_root, raw_episodes, write_d4rl, capsys):
    write_d4rl(d4rl_dir / "hopper_medium-v2.hdf5", raw_episodes)
    (d4rl_dir / "broken.hdf5").write_text("junk")
    assert main(["datasets", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    steps = sum(len(raw["rewards"]) for raw in raw_episodes)
    assert rows["hopper_medium-v2"]["steps"] == steps
    assert rows["hopper_medium-v2"]["episodes"] == len(raw_episodes)
    assert rows["broken"]["steps"] is None
