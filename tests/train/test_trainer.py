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


def logged_losses(run_dir) -> dict[int, float]:
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.mark.parametrize("context_mode", ["window", "episode"])
def test_resume_is_exact_with_the_device_sampler_and_across_sampler_kinds(tmp_path, context_mode):
    """The resident sampler's batches are the host sampler's, its state in the checkpoint
    too: a run resumed with either kind repeats the uninterrupted run's losses exactly."""
    model = {"context_mode": context_mode, "context_len": 20 if context_mode == "episode" else 4}

    def run(name: str, steps: int, sampler: str, resume: bool = False) -> dict[int, float]:
        cfg = replace(config(tmp_path, steps, **model), name=name)
        cfg.data = replace(cfg.data, sampler=sampler)
        agent = DecisionTransformerAgent(cfg.model, return_scale=10.0)
        fit(agent, pendulum_like(), config=cfg, resume=resume, progress=False)
        return logged_losses(tmp_path / name)

    device = run("device", 6, "device")
    assert run("host", 6, "host") == device
    run("resumed", 2, "device")
    run("resumed", 4, "host", resume=True)
    assert run("resumed", 6, "device", resume=True) == device


def test_compiled_model_falls_back_to_eager_when_compiling_fails():
    from flowrl.train.step import CompiledModel

    def failing_backend(graph, example_inputs):
        raise RuntimeError("no compiler here\nsecond line")

    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    compiled = CompiledModel(model, backend=failing_backend)
    torch.testing.assert_close(compiled(x), model(x))
    assert compiled.tried and compiled.error is not None and "no compiler here" in compiled.error
    assert compiled.active is model and compiled.seconds > 0
    torch.testing.assert_close(compiled(x), model(x))  # later calls go straight to eager

    working = CompiledModel(model, backend="eager")  # dynamo's tracing, no code generation
    torch.testing.assert_close(working(x), model(x))
    assert working.error is None and working.active is working.compiled
