"""Damaged or inconsistent datasets on disk: one UserError naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from flowrl.cli import main
from flowrl.data import DEFAULT_DATASET_ID, load_dataset, load_or_collect
from flowrl.errors import UserError
from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]


def main_data(minari_root, dataset_id):
    return minari_root / dataset_id / "data" / "main_data.hdf5"


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b[:100],
        lambda b: b"",
        lambda b: bytes(len(b)),
    ],
    ids=["truncated-half", "truncated-header", "zero-bytes", "zeroed"],
)
def test_damaged_main_data_is_one_line(minari_root, raw_episodes, write_minari, damage, capsys):
    write_minari("toy/damaged-v0", raw_episodes)
    path = main_data(minari_root, "toy/damaged-v0")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError) as err:
        load_dataset("toy/damaged-v0")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert main(["datasets", "show", "toy/damaged-v0"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("counted", [3, 7])
def test_total_episodes_must_match_the_file(minari_root, raw_episodes, write_minari, counted):
    write_minari("toy/count-v0", raw_episodes)  # 5 episodes
    metadata = minari_root / "toy" / "count-v0" / "data" / "metadata.json"
    meta = json.loads(metadata.read_text())
    meta["total_episodes"] = counted
    metadata.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=f"counts {counted} episodes .* holds 5"):
        load_dataset("toy/count-v0")


def test_episode_that_is_not_a_group(minari_root, raw_episodes, write_minari):
    write_minari("toy/flat-v0", raw_episodes)
    with h5py.File(main_data(minari_root, "toy/flat-v0"), "a") as file:
        del file["episode_1"]
        file["episode_1"] = [1.0, 2.0]
    with pytest.raises(UserError, match="episode_1"):
        load_dataset("toy/flat-v0")


def test_unknown_ids_name_the_settings_that_download(minari_root, d4rl_dir):
    for spec in ("nope/missing-v0", "hopper-medium-v2"):
        with pytest.raises(UserError) as err:
            load_dataset(spec)
        assert "--set data.download=true" in str(err.value), spec
        assert "--download" in str(err.value)


def test_broken_quickstart_dataset_shows_its_error_instead_of_recollecting(minari_root):
    data = minari_root / DEFAULT_DATASET_ID / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable Minari dataset"):
        load_or_collect(DEFAULT_DATASET_ID, progress=False)
    assert (data / "metadata.json").read_text() == "{not json"  # left as it was


def test_collect_with_zero_episode_steps(minari_root, capsys):
    assert main(["collect", "--episodes", "1", "--max-episode-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "max_episode_steps must be at least 1, got 0" in err and "Traceback" not in err
    assert not any(minari_root.iterdir())


@pytest.mark.parametrize(
    "refs",
    [
        ["--ref-min-score", "5", "--ref-max-score", "5"],
        ["--ref-min-score", "nan", "--ref-max-score", "1"],
        ["--ref-min-score", "0", "--ref-max-score", "inf"],
        ["--ref-min-score", "-100"],  # the env's table has a max of -154: min >= max
        ["--env", "CartPole-v1", "--ref-max-score", "500"],  # no min known for CartPole
    ],
)
def test_collect_with_bad_reference_returns(minari_root, capsys, refs):
    assert main(["collect", "--episodes", "1", *refs]) == 2
    err = capsys.readouterr().err
    assert "expected two finite returns, min < max" in err and "--ref-min-score" in err
    assert len(err.strip().splitlines()) == 1 and not any(minari_root.iterdir())


@pytest.mark.parametrize("dataset_id", ["x/../y-v0", "flowrl/" + "a" * 201 + "-v0", "..-v0"])
def test_collect_with_a_dataset_id_that_is_no_plain_path(minari_root, capsys, dataset_id):
    assert main(["collect", "--episodes", "1", "--dataset-id", dataset_id]) == 2
    err = capsys.readouterr().err
    assert "dataset id" in err and len(err.strip().splitlines()) == 1
    assert not any(minari_root.iterdir())


def test_reference_returns_in_the_metadata_are_checked(minari_root, raw_episodes, write_minari):
    write_minari("zoo/flat-v0", raw_episodes, ref_min_score=3.0, ref_max_score=3.0)
    with pytest.raises(UserError, match=r"metadata ref_min_score, ref_max_score: min 3.0, max"):
        load_dataset("zoo/flat-v0")


def test_datasets_list_opens_each_dataset_and_names_the_damaged_ones(
    minari_root, d4rl_dir, raw_episodes, write_minari
):
    """A truncated file, metadata counting -5 steps or more steps than the file holds, and
    metadata that is no JSON: one line each in `flowrl datasets list`, no Python warnings;
    the healthy dataset listed with its counts."""
    for name in ("good", "truncated", "negative", "steps", "garbled"):
        write_minari(f"toy/{name}-v0", raw_episodes)
    path = main_data(minari_root, "toy/truncated-v0")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for name, steps in (("negative", -5), ("steps", 10_000)):
        metadata = minari_root / "toy" / f"{name}-v0" / "data" / "metadata.json"
        metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "total_steps": steps}))
    (minari_root / "toy" / "garbled-v0" / "data" / "metadata.json").write_text("{not json")
    (minari_root / ".tmp-abc" / "data").mkdir(parents=True)  # a collection's leftover
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "PYTHONPATH": str(ROOT)}
    env["D4RL_DATASET_DIR"] = str(d4rl_dir)
    listed = subprocess.run(
        [sys.executable, "-m", "flowrl", "datasets", "list"],
        env=env, capture_output=True, text=True, timeout=scaled(600),
    )  # fmt: skip
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(lines) == {
        f"toy/{n}-v0" for n in ("good", "truncated", "negative", "steps", "garbled")
    }
    steps = sum(len(episode["rewards"]) for episode in raw_episodes)
    assert lines["toy/good-v0"].split()[1:] == ["minari", str(len(raw_episodes)), str(steps)]
    assert (
        "damaged:" in lines["toy/truncated-v0"]
        and "not a readable HDF5 file" in lines["toy/truncated-v0"]
    )
    assert "total_steps=-5: expected a count >= 0" in lines["toy/negative-v0"]
    assert f"counts 10000 steps (total_steps) but the file holds {steps}" in lines["toy/steps-v0"]
    assert "unreadable metadata" in lines["toy/garbled-v0"]
    as_json = subprocess.run(
        [sys.executable, "-m", "flowrl", "datasets", "list", "--json"],
        env=env, capture_output=True, text=True, timeout=scaled(600),
    )  # fmt: skip
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert rows["toy/good-v0"]["damaged"] is None and rows["toy/negative-v0"]["steps"] is None
    for name, message in (("negative", "total_steps=-5"), ("steps", "counts 10000 steps")):
        shown = subprocess.run(
            [sys.executable, "-m", "flowrl", "datasets", "show", f"toy/{name}-v0"],
            env=env, capture_output=True, text=True, timeout=scaled(600),
        )  # fmt: skip
        assert shown.returncode == 2 and "Traceback" not in shown.stderr, shown.stderr
        assert len(shown.stderr.strip().splitlines()) == 1 and message in shown.stderr
