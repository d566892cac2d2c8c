"""`flowrl collect` and `flowrl datasets` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from tests.timeouts import scaled

REPO = Path(__file__).resolve().parents[2]


def flowrl(*args: str, minari_root: Path, d4rl_dir: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "MINARI_DATASETS_PATH": str(minari_root),
        "D4RL_DATASET_DIR": str(d4rl_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "flowrl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )


def test_collect_then_show_json(minari_root, d4rl_dir):
    collected = flowrl(
        "collect", "--episodes", "3", "--max-episode-steps", "20", "--dataset-id", "test/cli-v0",
        "--seed", "1", minari_root=minari_root, d4rl_dir=d4rl_dir,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    assert "test/cli-v0" in collected.stdout

    shown = flowrl(
        "datasets", "show", "test/cli-v0", "--json", minari_root=minari_root, d4rl_dir=d4rl_dir
    )
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    with h5py.File(minari_root / "test" / "cli-v0" / "data" / "main_data.hdf5", "r") as file:
        returns = [float(np.sum(file[f"episode_{i}/rewards"][()])) for i in range(3)]
        obs_dim = file["episode_0/observations"].shape[1]
    assert stats["episodes"] == 3 and stats["steps"] == 60
    assert (stats["obs_dim"], stats["act_dim"], stats["env_id"]) == (obs_dim, 1, "Pendulum-v1")
    np.testing.assert_allclose(
        [stats["return_min"], stats["return_mean"], stats["return_max"]],
        [min(returns), np.mean(returns), max(returns)],
        rtol=1e-5,
    )

    listed = flowrl("datasets", "list", "--json", minari_root=minari_root, d4rl_dir=d4rl_dir)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["test/cli-v0"]["episodes"] == 3 and rows["test/cli-v0"]["steps"] == 60


def test_bad_input_is_one_line_and_exit_2(minari_root, d4rl_dir, tmp_path):
    missing = flowrl(
        "datasets", "show", "test/absent-v0", minari_root=minari_root, d4rl_dir=d4rl_dir
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0
    assert "error" in missing.stderr and "test/absent-v0" in missing.stderr

    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as file:
        file["observations"] = np.zeros((4, 2))
    broken = flowrl("datasets", "show", str(bad), minari_root=minari_root, d4rl_dir=d4rl_dir)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert str(bad) in broken.stderr and "'actions'" in broken.stderr
