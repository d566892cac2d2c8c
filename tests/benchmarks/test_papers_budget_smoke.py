"""benchmarks/papers_budget.py: prep packs Minari Hopper datasets into one file, and
`run --smoke` unpacks it, trains every set x kind x seed on the CPU at tiny size, evaluates
in Hopper-v5 and writes the results table. The data: tiny Hopper datasets collected here."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import gymnasium as gym
import numpy as np
import pytest

from flowrl.data.minari_writer import write_minari_dataset
from tests.benchmarks.smoke import ROOT, run_checked
from tests.timeouts import scaled

SCRIPT = str(ROOT / "benchmarks" / "papers_budget.py")


def collect_hopper(dataset_id: str, episodes: int, seed: int) -> None:
    """Random-action Hopper-v5 episodes (at most 15 steps) as a Minari dataset, with D4RL's
    hopper reference returns, under MINARI_DATASETS_PATH (flowrl's own Minari writer)."""
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Hopper-v5", max_episode_steps=15)
    env.action_space.seed(seed)
    buffers = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        steps = {"observations": [observation], "actions": [], "rewards": []}
        steps |= {"terminations": [], "truncations": []}
        done = False
        while not done:
            action = env.action_space.sample()
            observation, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(
                steps, (observation, action, reward, terminated, truncated), strict=True
            ):
                steps[key].append(value)
            done = terminated or truncated
        buffers.append(EpisodeBuffer(id=episode, **{k: np.array(v) for k, v in steps.items()}))
    write_minari_dataset(
        dataset_id,
        buffers,
        env_spec=env.spec,
        observation_space=env.observation_space,
        action_space=env.action_space,
        metadata={"ref_min_score": -20.272305, "ref_max_score": 3234.3},
    )
    env.close()


@pytest.fixture
def source(tmp_path, monkeypatch):
    folder = tmp_path / "source"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    for index, part in enumerate(("medium-v0", "medium-replay-v0", "expert-v0")):
        collect_hopper(f"zoo/hopper/{part}", episodes=4, seed=100 * index)
    return folder


def test_prep_then_smoke_run_writes_the_table(source, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MINARI_DATASETS_PATH"}
    env["OMP_NUM_THREADS"] = "1"
    packed = tmp_path / "packed" / "hopper.tar.xz"
    run_checked([sys.executable, SCRIPT, "prep", "--source", str(source), "--out", str(packed)],
                env, timeout=120)  # fmt: skip
    with tarfile.open(packed) as tar:
        names = set(tar.getnames())
    for part in ("medium-v0", "medium-replay-v0", "expert-v0"):
        assert f"zoo/hopper/{part}/data/main_data.hdf5" in names

    out = tmp_path / "out"
    cmd = [sys.executable, SCRIPT, "run", "--smoke", "--data", str(packed), "--out", str(out)]
    cmd += ["--work", str(tmp_path / "work")]
    stdout = run_checked(cmd, env, timeout=900)
    table = (out / "results.md").read_text()
    assert "sweep exit 0" in table and table in stdout
    rows = [line for line in table.splitlines() if "normalized_mean_last" in line]
    for dataset in ("zoo/hopper/medium-v0", "zoo/hopper/medium-replay-v0",
                    "zoo/hopper/medium-v0+zoo/hopper/expert-v0"):  # fmt: skip
        for kind in ("flow-relu", "softmax"):
            assert [r for r in rows if dataset + " " in r + " " and f" {kind} " in r], (
                dataset,
                kind,
            )
    assert "IQM" in table and "95% CI" in table
    runs = list((out / "runs").iterdir())
    assert len(runs) == 3 * 2 * 2  # sets x kinds x seeds
    assert all((r / "metrics.jsonl").is_file() for r in runs)
    assert not list(out.rglob("*.pt"))  # checkpoints stay in --work


def test_prep_names_what_is_missing(tmp_path):
    done = subprocess.run(
        [sys.executable, SCRIPT, "prep", "--source", str(tmp_path), "--out", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=ROOT, timeout=scaled(120),
    )  # fmt: skip
    assert done.returncode != 0 and "zoo/hopper/medium-v0" in done.stderr
    assert "Traceback" not in done.stderr
