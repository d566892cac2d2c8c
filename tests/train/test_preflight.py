"""Fail early: env and spaces checked before step 1, eval.env_id, action ranges, datasets
that changed under a resumed run. Real HDF5 files, real Gymnasium envs, real processes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from flowrl.agents.checkpoint import load_checkpoint
from flowrl.data import Episode, EpisodeDataset, load_dataset
from flowrl.envs.record import EnvRecord
from flowrl.errors import DataWarning, UserError
from flowrl.train.preflight import check_env
from tests.train.helpers import ROOT, flowrl


def write_hdf5(path: Path, obs_dim: int, act_dim: int, *, seed: int = 0, act_high=1.0) -> Path:
    """Six 20-step episodes in D4RL's flat layout."""
    rng = np.random.default_rng(seed)
    steps = 120
    terminals = np.zeros(steps, bool)
    terminals[19::20] = True
    with h5py.File(path, "w") as file:
        file["observations"] = rng.normal(size=(steps, obs_dim)).astype(np.float32)
        file["actions"] = rng.uniform(-act_high, act_high, (steps, act_dim)).astype(np.float32)
        file["rewards"] = rng.normal(size=steps).astype(np.float32)
        file["terminals"] = terminals
    return path


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "PYTHONPATH": str(ROOT)}


def config(tmp_path: Path, dataset: Path, **eval_settings) -> Path:
    cfg = {
        "name": "tiny",
        "out_dir": str(tmp_path / "runs"),
        "steps": 2,
        "log_every": 1,
        "checkpoint_every": 2,
        "data": {"dataset": str(dataset)},
        "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2, "context_len": 4},
        "optim": {"batch_size": 4, "warmup_steps": 1},
        "eval": {"every": 0, "episodes": 1, "num_envs": 1, "max_steps": 5, **eval_settings},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(env, cfg: Path, *extra: str):
    return flowrl(["train", "--config", str(cfg), "--no-progress", *extra], env)


def test_dataset_named_like_hopper_with_other_sizes_stops_before_training(env, tmp_path):
    data = write_hdf5(tmp_path / "hopper_medium-v2.hdf5", obs_dim=3, act_dim=3)
    done = train(env, config(tmp_path, data))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Hopper-v5" in done.stderr and "observations of size 3 in the data, 11" in done.stderr
    assert not (tmp_path / "runs").exists()  # stopped before step 1, before the run folder


def test_file_naming_no_env_needs_eval_env_id_which_then_trains_and_evaluates(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1, act_high=9.0)
    done = train(env, config(tmp_path, data))
    assert done.returncode == 2 and "eval.env_id" in done.stderr
    assert "Traceback" not in done.stderr

    done = train(env, config(tmp_path, data, env_id="Pendulum-v1"))
    assert done.returncode == 0, done.stderr[-2000:]
    # actions up to 9 against Pendulum's [-2, 2]: one warning line naming the dimension
    warning = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "dimension 0" in warning[0] and "Pendulum-v1" in warning[0]
    state = load_checkpoint(tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt")
    assert state["agent"]["env_id"] == "Pendulum-v1"


def test_wrong_eval_env_id_is_caught_before_training(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    for env_id, message in (("Nope-v9", "Nope-v9"), ("Hopper-v5", "size 3 in the data, 11")):
        done = train(env, config(tmp_path, data, env_id=env_id))
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_sampled_eval_actions_need_a_discrete_dataset(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    done = train(env, config(tmp_path, data, env_id="Pendulum-v1", sample_actions=True))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "eval.sample_actions=true needs discrete actions" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_zero_sized_observations_or_actions(tmp_path):
    for obs_dim, act_dim in ((0, 1), (3, 0)):
        path = write_hdf5(tmp_path / f"zero{obs_dim}{act_dim}.hdf5", obs_dim, act_dim)
        with pytest.raises(UserError, match="at least one value"):
            load_dataset(str(path))


def test_action_range_warning_names_dimension_and_range():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (30, 3))  # Hopper-v5 acts in [-1, 1]^3
    actions[:, 1] = rng.uniform(-7, 1, 30)
    episode = Episode(rng.normal(size=(30, 11)), actions, np.zeros(30), np.zeros(30), np.zeros(30))
    dataset = EpisodeDataset("wide", [episode])
    with pytest.warns(DataWarning) as caught:
        check_env(dataset, EnvRecord("Hopper-v5"))
    assert len(caught) == 1
    assert "dimension 1" in str(caught[0].message) and "[-1, 1]" in str(caught[0].message)
    episode.actions[:, 1] = np.clip(episode.actions[:, 1], -1.15, 1)  # within 10%: quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(EpisodeDataset("near", [episode]), EnvRecord("Hopper-v5"))


def test_resume_on_a_changed_dataset_stops_unless_allowed(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    assert train(env, cfg).returncode == 0
    write_hdf5(data, obs_dim=3, act_dim=1, seed=1)  # same id and sizes, other contents
    more = ("--resume", "--set", "steps=4", "--set", "checkpoint_every=4")
    done = train(env, cfg, *more)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "changed since the checkpoint" in done.stderr and "--allow-dataset-change" in done.stderr
    done = train(env, cfg, *more, "--allow-dataset-change")
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_checkpoint(tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt")
    assert state["step"] == 4


def test_resume_allowed_onto_data_of_other_sizes_is_one_line(env, tmp_path):
    """--allow-dataset-change onto data with 2-dim observations (and an env that fits them):
    the checkpoint's weights do not fit; it was torch's traceback."""
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    assert train(env, cfg).returncode == 0
    write_hdf5(data, obs_dim=2, act_dim=1)
    other = ("--set", "eval.env_id=MountainCarContinuous-v0", "--allow-dataset-change")
    done = train(env, cfg, "--resume", "--set", "steps=4", *other)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "the checkpoint's weights do not fit this run's model" in done.stderr


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This machine as a user has it: no Triton interpreter (the kernel tests set it)."""
    return {k: v for k, v in env.items() if k != "TRITON_INTERPRET"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="triton runs here")
def test_triton_backend_without_cuda_stops_before_the_run_folder(env, tmp_path):
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    done = train(clean_env(env), cfg, "--set", "model.attention_backend=triton")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "model.attention_backend=triton runs on CUDA devices only, not on cpu" in done.stderr
    assert not (tmp_path / "runs").exists()
    assert train(clean_env(env), cfg).returncode == 0  # the plain rerun trains


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 trains here")
def test_bf16_on_the_cpu_stops_before_the_run_folder(env, tmp_path):
    """It failed at step 1's backward with a dtype error in the flow attention."""
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    done = train(env, cfg, "--set", "precision=bf16")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "precision=bf16 trains on CUDA devices only, not on cpu" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_episode_context_shorter_than_the_episodes_is_refused(env, tmp_path):
    """Six 20-step episodes: a context of 12 would train on their first 12 steps only."""
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    episode = ["--set", "model.context_mode=episode"]
    done = train(env, cfg, *episode, "--set", "model.context_len=12")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model.context_len=12 but dataset" in done.stderr
    assert "episodes of up to 20 steps" in done.stderr and "model.context_len=20" in done.stderr
    assert not (tmp_path / "runs").exists()
    assert train(env, cfg, *episode, "--set", "model.context_len=20").returncode == 0


def test_a_run_that_stopped_before_its_first_checkpoint_names_overwrite(env, tmp_path):
    """What a run leaves when it fails at step 1 (config, metrics, events, an empty
    checkpoints folder): a plain rerun is refused with the one way on, --overwrite; nothing
    is deleted on our own (the metrics may be what the user wants to read)."""
    data = write_hdf5(tmp_path / "mine.hdf5", obs_dim=3, act_dim=1)
    cfg = config(tmp_path, data, env_id="Pendulum-v1")
    run = tmp_path / "runs" / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl", "events.out.tfevents.1.host.1.0"):
        (run / name).write_text("from the failed start\n")
    done = train(env, cfg)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "stopped before its first checkpoint" in done.stderr
    assert "nothing to --resume: start it over with --overwrite" in done.stderr
    assert (run / "metrics.jsonl").read_text() == "from the failed start\n"
    done = train(env, cfg, "--resume")
    assert done.returncode == 2 and "nothing to resume; start over with --overwrite" in done.stderr
    done = train(env, cfg, "--overwrite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "checkpoints" / "last.pt").is_file()


STEPPY = '''
import math

import gymnasium as gym
import numpy as np


class Steppy(gym.Env):
    """Takes any speed when made; a negative one fails in its first step (math.sqrt)."""

    observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, speed: float = 1.0):
        self.speed = speed

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.full(3, math.sqrt(self.speed), np.float32), 0.0, False, False, {}


gym.register("Steppy-v0", entry_point=Steppy, max_episode_steps=5)
'''


def test_env_settings_that_fail_only_in_a_step_stop_before_training(env, tmp_path):
    """The preflight takes one reset and one step in the eval env: a setting the env accepts
    when made but fails on in `step` is one line before the run folder, not a traceback at
    the first evaluation."""
    (tmp_path / "steppy.py").write_text(STEPPY)
    env = {**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"}
    data = write_hdf5(tmp_path / "steppy.hdf5", obs_dim=3, act_dim=2)
    cfg = config(tmp_path, data, env_id="steppy:Steppy-v0", env_kwargs={"speed": -1.0})
    out = train(env, cfg)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        "flowrl train: error: environment 'steppy:Steppy-v0' with {'speed': -1.0} fails in its "
        "first reset or step: math domain error"
    ]
    assert not (tmp_path / "runs").exists()
