"""The trainer in-process: an agent fitted on an in-memory dataset, resumed with settings
that do not change the result, refused with ones that do."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig
from flowrl.data import Episode, EpisodeDataset
from flowrl.errors import UserError
from flowrl.train import fit
from flowrl.train.config import EvalConfig, OptimConfig, TrainConfig


def pendulum_like(seed: int = 0) -> EpisodeDataset:
    """Random episodes with Pendulum-v1's shapes, so evaluation runs in the real env."""
    rng = np.random.default_rng(seed)
    episodes = [
        Episode(
            observations=rng.normal(size=(n, 3)),
            actions=rng.uniform(-2, 2, size=(n, 1)),
            rewards=-rng.uniform(0, 10, size=n),
            terminations=np.zeros(n, bool),
            truncations=np.arange(n) == n - 1,
        )
        for n in (12, 20, 9)
    ]
    return EpisodeDataset("toy", episodes, env_id="Pendulum-v1")


def config(tmp_path, steps: int, **model) -> TrainConfig:
    return TrainConfig(
        name="run",
        out_dir=str(tmp_path),
        steps=steps,
        device="cpu",
        log_every=1,
        checkpoint_every=2,
        model=DecisionTransformerConfig(
            **{"embed_dim": 16, "n_layers": 1, "n_heads": 2, "context_len": 4, **model}
        ),
        optim=OptimConfig(batch_size=4, warmup_steps=1),
        eval=EvalConfig(every=0, episodes=1, num_envs=1, max_steps=3),
    )


def train(tmp_path, steps: int, *, resume: bool = False, **model) -> dict:
    cfg = config(tmp_path, steps, **model)
    agent = DecisionTransformerAgent(cfg.model, return_scale=10.0)
    return fit(agent, pendulum_like(), config=cfg, resume=resume, progress=False)


def test_resume_ignores_settings_that_do_not_change_the_result(tmp_path):
    summary = train(tmp_path, 2)
    assert summary["results"][0]["episodes"] == 1
    train(tmp_path, 4, resume=True, attention_backend="naive")
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]
    with pytest.raises(UserError, match="model settings differ"):
        train(tmp_path, 6, resume=True, embed_dim=32)


def test_resume_reads_a_setting_missing_from_an_older_checkpoint_as_its_default(tmp_path):
    """A checkpoint written before `model.attention_clamp` existed resumes at the default,
    and refuses another value."""
    train(tmp_path, 2)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=False)
    del state["train_config"]["model"]["attention_clamp"]
    torch.save(state, path)
    train(tmp_path, 4, resume=True)
    with pytest.raises(UserError, match="model settings differ"):
        train(tmp_path, 6, resume=True, attention_clamp=20.0)


def test_fit_refuses_a_dataset_of_other_shapes(tmp_path):
    cfg = config(tmp_path, 1)
    agent = DecisionTransformerAgent(replace(cfg.model, state_dim=5), return_scale=10.0)
    with pytest.raises(UserError, match=r"model\.state_dim=5"):
        fit(agent, pendulum_like(), config=cfg, progress=False)
