"""`flowrl train --dry-run`: the whole preflight, nothing written; and random settings
through it, which end in success or one line, never a traceback (hypothesis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowrl.errors import UserError
from flowrl.train import load_config
from flowrl.train.dry_run import dry_run
from tests.timeouts import scaled
from tests.train.test_preflight import config, write_hdf5

ROOT = Path(__file__).resolve().parents[2]


def tree(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def train(env: dict[str, str], cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flowrl", "train", "--config", str(cfg), "--no-progress"]
    return subprocess.run(
        [*cmd, *extra], env=env, capture_output=True, text=True, timeout=scaled(600)
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "PYTHONPATH": str(ROOT)}


def test_dry_run_checks_everything_and_writes_nothing(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    checked = train(env, cfg, "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: train {tmp_path / 'runs' / 'tiny'} to step 2")
    assert not (tmp_path / "runs").exists()
    assert train(env, cfg).returncode == 0  # the run itself
    before = tree(tmp_path / "runs")
    for extra, message in (
        ([], "already holds a run"),
        (["--resume", "--set", "optim.lr=5e-4"], "optim.lr (0.001 there, 0.0005 here)"),
        (["--resume", "--overwrite"], "exclude each other"),
        (["--set", "model.state_encoder=grid", "--overwrite"], "model.state_encoder=grid"),
        (["--set", "eval.env_id=CartPole-v1", "--overwrite"], "CartPole-v1"),
    ):
        done = train(env, cfg, "--dry-run", *extra)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, extra
    resumed = train(env, cfg, "--dry-run", "--resume", "--set", "steps=4")
    assert (
        resumed.returncode == 0 and "ok: resume" in resumed.stdout and "at step 2" in resumed.stdout
    )
    assert tree(tmp_path / "runs") == before  # no lock, marker, config or metrics written


def test_a_grid_encoder_on_other_data_stops_before_the_run_folder(env, tmp_path):
    """It stopped after the run folder was made, and left it."""
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    done = train(env, cfg, "--set", "model.state_encoder=grid")
    assert done.returncode == 2 and "model.state_encoder=grid" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


# Settings a user or a script might give, good and bad, as `--set` values.
SETTINGS = {
    "steps": ["3", "0", "-2", "010", "0x10", "many", "true", "2.5"],
    "seed": ["0", "-1", "7"],
    "threads": ["0", "1", "-1"],
    "device": ["cpu", "auto", "cuda", "cuda:x", "banana"],
    "precision": ["auto", "fp32", "bf16", "fp16"],
    "log_every": ["1", "0"],
    "name": ["tiny", ".", "..", "a/b", "/abs", ""],
    "model.embed_dim": ["16", "12", "0", "true", "x"],
    "model.n_heads": ["1", "2", "3"],
    "model.context_len": ["4", "8", "0", "2.5", "100"],
    "model.context_mode": ["window", "episode", "both"],
    "model.attention": ["flow", "softmax", "flow-relu", "linear"],
    "model.state_encoder": ["linear", "grid", "cnn"],
    "model.discrete": ["false", "true", "2"],
    "model.dropout": ["0.1", "1.0", "-0.1"],
    "optim.lr": ["1e-3", "nan", "-1", "inf"],
    "optim.betas": ["[0.9, 0.999]", "[0.9]", "[1.5, 0.9]"],
    "optim.batch_size": ["4", "0"],
    "data.observation_mask": ["none", "P", "Q"],
    "data.stretch": ["[]", "[2]", "[1]", "[2.5]", "x"],
    "data.return_scale": ["10", "0", "nan"],
    "eval.max_steps": ["5", "0", "-3"],
    "eval.episodes": ["1", "0"],
    "eval.target_returns": ["[]", "[5]", "[1, 1.0]", "[nan]"],
    "eval.env_id": ["Pendulum-v1", "CartPole-v1", "Nope-v0", "''"],
    "eval.env_kwargs": ["{}", "{g: 9.0}", "{g: heavy}", "{gravity: 2}", "{g: true}"],
    "eval.sample_actions": ["false", "true"],
    "eval.seed": ["0", "-1"],
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_hdf5(tmp_path_factory.mktemp("data") / "mine.hdf5", obs_dim=3, act_dim=1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chosen=st.dictionaries(
        st.sampled_from(sorted(SETTINGS)), st.integers(0, 7), min_size=1, max_size=5
    ),
    resume=st.booleans(),
    overwrite=st.booleans(),
)
def test_random_settings_end_in_success_or_one_line(dataset, chosen, resume, overwrite):
    """Through `load_config` and the dry run: `ok: ...` or a UserError of one line."""
    out_dir = dataset.parent / "runs"
    overrides = [f"data.dataset={dataset}", "eval.env_id=Pendulum-v1", f"out_dir={out_dir}"]
    overrides += ["model.embed_dim=16", "model.n_heads=2", "model.context_len=8"]
    overrides += ["eval.episodes=1", "eval.num_envs=1", "eval.max_steps=5"]
    overrides += [f"{key}={values[i % len(values)]}" for key, i in chosen.items()
                  for values in [SETTINGS[key]]]  # fmt: skip
    try:
        line = dry_run(load_config(None, overrides), resume=resume, overwrite=overwrite)
    except UserError as err:
        assert "\n" not in str(err) and str(err), overrides
        return
    assert line.startswith("ok") and "\n" not in line, overrides
    assert not out_dir.exists(), overrides  # nothing written
