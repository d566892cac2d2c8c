"""Collection: what lands on disk replays in the env, writes are atomic, Pendulum data is mixed."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from flowrl.cli import main
from flowrl.data import collect_dataset, load_dataset
from flowrl.data.reference import gym_reference
from flowrl.envs import (
    COLLECTION_POLICIES,
    PendulumSwingUp,
    RandomPolicy,
    collection_policy,
    default_policy,
)
from flowrl.errors import RenamedWarning, UserError
from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]


def test_collected_episodes_replay_in_the_env(minari_root):
    dataset = collect_dataset(
        "Pendulum-v1", "pendulum-swingup", episodes=3, dataset_id="test/pend-v0", seed=4,
        max_episode_steps=25, progress=False,
    )  # fmt: skip
    assert dataset.num_episodes == 3 and dataset.num_steps == 75
    assert all(ep.truncations[-1] and not ep.terminations.any() for ep in dataset.episodes)
    assert dataset.env_id == "Pendulum-v1"
    assert (dataset.ref_min_score, dataset.ref_max_score) == gym_reference("Pendulum-v1")

    env = gym.make("Pendulum-v1")
    with h5py.File(minari_root / "test" / "pend-v0" / "data" / "main_data.hdf5", "r") as file:
        seeds = [int(file[f"episode_{i}"].attrs["seed"]) for i in range(3)]
    for ep, seed in zip(dataset.episodes, seeds, strict=True):
        observation, _ = env.reset(seed=seed)
        for t in range(len(ep)):  # the state each action was taken in, and its reward
            np.testing.assert_allclose(ep.observations[t], observation, rtol=1e-6)
            observation, reward, *_ = env.step(ep.actions[t])
            assert ep.rewards[t] == pytest.approx(reward, rel=1e-5)


def test_same_seed_same_data(minari_root):
    kwargs = {"episodes": 2, "seed": 7, "max_episode_steps": 10, "progress": False}
    a = collect_dataset(dataset_id="test/a-v0", **kwargs)
    b = collect_dataset(dataset_id="test/b-v0", **kwargs)
    for x, y in zip(a.episodes, b.episodes, strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)


def test_interrupted_write_leaves_nothing(minari_root, monkeypatch):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    write = HDF5Storage.update_episodes

    def write_half_then_interrupt(self, episodes):
        write(self, list(episodes)[:1])
        raise KeyboardInterrupt

    monkeypatch.setattr(HDF5Storage, "update_episodes", write_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        collect_dataset(episodes=3, dataset_id="test/cut-v0", max_episode_steps=5, progress=False)
    assert not (minari_root / "test" / "cut-v0").exists()
    assert not list(minari_root.rglob(".cut-v0*"))  # no staging folder left behind
    with pytest.raises(UserError, match="no local Minari dataset 'test/cut-v0'"):
        load_dataset("test/cut-v0")


def test_existing_dataset_needs_overwrite(minari_root):
    kwargs = {"dataset_id": "test/once-v0", "max_episode_steps": 5, "progress": False}
    collect_dataset(episodes=2, **kwargs)
    with pytest.raises(UserError, match="already exists"):
        collect_dataset(episodes=3, **kwargs)
    assert load_dataset("test/once-v0").num_episodes == 2
    collect_dataset(episodes=3, overwrite=True, **kwargs)
    assert load_dataset("test/once-v0").num_episodes == 3
    assert sorted(p.name for p in (minari_root / "test").iterdir()) == [
        "namespace_metadata.json",
        "once-v0",
    ]


def test_default_pendulum_data_is_of_mixed_quality(minari_root):
    dataset = collect_dataset(episodes=40, dataset_id="test/mixed-v0", seed=0, progress=False)
    scores = dataset.normalized_score(dataset.returns)
    assert scores.max() > 90  # some episodes near the noise-free controller
    assert (scores < 50).mean() > 0.25  # many poor ones
    assert scores.mean() < 75  # room for a return-conditioned policy to beat the data


def mean_return(policy, episodes: int, seed: int) -> tuple[float, float]:
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        observation, _ = env.reset(seed=seed + i)
        policy.reset(rng)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns) / np.sqrt(episodes))


def test_pendulum_reference_returns_hold_on_a_fresh_sample():
    low, high = gym_reference("Pendulum-v1")
    space = gym.make("Pendulum-v1").action_space
    for policy, reference in ((RandomPolicy(space), low), (PendulumSwingUp(noise=0.0), high)):
        mean, stderr = mean_return(policy, episodes=40, seed=12345)
        assert abs(mean - reference) < 4 * stderr + 5


def test_policy_and_env_mismatch(minari_root):
    with pytest.raises(UserError, match="pendulum-swingup' is for Pendulum-v1"):
        collect_dataset("MountainCarContinuous-v0", "pendulum-swingup", episodes=1, progress=False)
    with pytest.raises(UserError, match="unknown policy"):
        collect_dataset("Pendulum-v1", "expert", episodes=1, progress=False)
    with pytest.raises(UserError, match="cannot make env"):
        collect_dataset("NoSuchEnv-v9", "random", episodes=1, progress=False)


def test_one_registry_names_the_policies_their_envs_and_defaults(minari_root, capsys):
    for entry in COLLECTION_POLICIES.values():
        assert all(env_id in gym.registry for env_id in entry.envs or ())
    assert default_policy("Pendulum-v1") == "pendulum-swingup"
    assert default_policy("flowrl/TMazeActive-v0") == "tmaze-noisy"
    assert default_policy("flowrl/MiniGridMemory-v0") == "minigrid-noisy"
    assert default_policy("MountainCarContinuous-v0") == "random"

    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    listed = " ".join(capsys.readouterr().out.split())
    assert all(name in listed for name in COLLECTION_POLICIES)
    args = ["collect", "--policy", "expert", "--episodes", "1", "--dataset-id", "test/x-v0"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "unknown policy 'expert'" in error
    assert all(name in error for name in COLLECTION_POLICIES)
    assert not (minari_root / "test" / "x-v0").exists()


def test_a_renamed_policy_still_collects_under_its_new_name(minari_root, capsys):
    args = ["collect", "--env", "flowrl/TMazePassive-v0", "--env-kwargs", "length=3"]
    args += ["--policy", "tmaze-mixed", "--episodes", "2", "--dataset-id", "test/old-v0"]
    assert main(args) == 0
    error = capsys.readouterr().err
    assert "flowrl collect: warning: policy 'tmaze-mixed' is now called 'tmaze-noisy'" in error
    meta = minari.load_dataset("test/old-v0").storage.metadata["flowrl_collect"]
    assert (meta["policy"], meta["noise"]) == ("tmaze-noisy", 0.6)
    with pytest.warns(RenamedWarning, match="'minigrid-mixed' is now called 'minigrid-noisy'"):
        assert collection_policy("minigrid-mixed") is COLLECTION_POLICIES["minigrid-noisy"]


def collect_process(root, *args: str, file_size_limit: int | None = None):
    """`flowrl collect ARGS` in a process of its own (under a file-size limit, `ulimit -f`)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-B", "-m", "flowrl", "collect", "--seed", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(600),
        preexec_fn=limit if file_size_limit is not None else None,
    )


def test_a_write_over_the_file_size_limit_is_refused_and_leaves_nothing(tmp_path):
    """Under `ulimit -f` HDF5 failed part-way, then crashed, and left a 1 MB staging folder."""
    done = collect_process(
        tmp_path, "--episodes", "20", "--dataset-id", "tests/big-v0", file_size_limit=300_000
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 1 and "file-size limit" in done.stderr
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_staging_folders_of_dead_writers_are_removed_at_the_next_write(tmp_path):
    first = collect_process(tmp_path, "--episodes", "2", "--dataset-id", "tests/a-v0")
    assert first.returncode == 0, first.stderr
    gone = subprocess.Popen(["true"])
    gone.wait()
    namespace = tmp_path / "tests"
    stale = [namespace / f".b-v0.tmp-{gone.pid}-x1", namespace / f".a-v0.old-{gone.pid}-x2"]
    live = namespace / f".c-v0.tmp-{os.getpid()}-x3"  # a write still going on
    for folder in (*stale, live):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "main_data.hdf5").write_bytes(b"partial")
    second = collect_process(tmp_path, "--episodes", "2", "--dataset-id", "tests/d-v0")
    assert second.returncode == 0, second.stderr
    assert not any(folder.exists() for folder in stale) and live.is_dir()
    assert (namespace / "a-v0").is_dir() and (namespace / "d-v0").is_dir()


@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_a_minari_root_that_cannot_be_written_stops_before_any_rollout(tmp_path, where):
    """It rolled out every episode, then gave a PermissionError traceback."""
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    blocker = tmp_path / "blocker"
    if where == "under a file":
        blocker.write_text("not a folder")
    else:
        blocker.mkdir(mode=0o555)
    done = collect_process(blocker / "root", "--episodes", "2", "--dataset-id", "tests/x-v0")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "flowrl collect: error: cannot write Minari dataset 'tests/x-v0' under "
        f"{blocker / 'root'}: {blocker} is "
        + ("not a folder" if where == "under a file" else "not writable")
        + " (MINARI_DATASETS_PATH sets the root)"
    ]
