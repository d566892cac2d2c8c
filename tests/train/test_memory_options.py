"""Training options for memory tasks: data.observation_mask, data.stretch and eval.env_kwargs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from flowrl.agents import DecisionTransformerAgent, load_agent
from flowrl.data import load_dataset
from flowrl.data.masked import mask_dataset
from flowrl.errors import UserError
from flowrl.train import fit
from flowrl.train.config_files import load_config


@pytest.fixture
def hopper_file(tmp_path):
    """A small file in D4RL's layout named like D4RL's hopper set (so: Hopper-v5)."""
    rng = np.random.default_rng(0)
    steps = 40
    path = tmp_path / "hopper_medium-v2.hdf5"
    with h5py.File(path, "w") as file:
        file["observations"] = rng.normal(size=(steps, 11)).astype(np.float32)
        file["actions"] = rng.uniform(-1, 1, size=(steps, 3)).astype(np.float32)
        file["rewards"] = rng.normal(size=steps).astype(np.float32)
        file["terminals"] = np.arange(steps) % 10 == 9
    return path


def config(hopper_file, tmp_path, *overrides: str):
    return load_config(
        None,
        [
            f"data.dataset={hopper_file}", f"out_dir={tmp_path / 'runs'}", "steps=2",
            "model.embed_dim=8", "model.n_heads=1", "model.n_layers=1", "model.context_len=4",
            "optim.batch_size=2", "eval.every=0", "eval.episodes=1", "eval.num_envs=1",
            "eval.max_steps=5", "eval.target_returns=[10.0]", *overrides,
        ],
    )  # fmt: skip


def test_masked_hopper_trains_and_evaluates_in_the_masked_env(hopper_file, tmp_path):
    cfg = config(hopper_file, tmp_path, "data.observation_mask=V")
    dataset = mask_dataset(load_dataset(str(hopper_file)), cfg.data.observation_mask)
    result = fit(DecisionTransformerAgent(cfg.model), dataset, config=cfg, progress=False)
    assert result["results"][0]["episodes"] == 1
    agent = load_agent(f"{result['run_dir']}/checkpoints/last.pt")
    assert agent.env_id == "flowrl/Hopper-V-v5" and agent.model.cfg.state_dim == 6


def test_bad_options_fail_before_training(hopper_file, tmp_path):
    with pytest.raises(UserError, match=r"data\.observation_mask='Q'"):
        config(hopper_file, tmp_path, "data.observation_mask=Q")
    cfg = config(hopper_file, tmp_path, "eval.env_kwargs.no_such_option=1")
    with pytest.raises(UserError, match=r"cannot make environment 'Hopper-v5'.*no_such_option"):
        fit(
            DecisionTransformerAgent(cfg.model),
            load_dataset(str(hopper_file)),
            config=cfg,
            progress=False,
        )
    assert not (tmp_path / "runs").exists()


def test_fit_refuses_a_stretch_its_dataset_does_not_have(hopper_file, tmp_path):
    cfg = config(hopper_file, tmp_path, "data.stretch=[2]")
    with pytest.raises(UserError, match=r"data\.stretch=\[2\] but dataset .* is not stretched"):
        fit(DecisionTransformerAgent(cfg.model), load_dataset(str(hopper_file)), config=cfg)
    assert not (tmp_path / "runs").exists()
