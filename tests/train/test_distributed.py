"""Training under torchrun (DDP over gloo on the CPU): runs, checkpoints, resumes, gradients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from flowrl.agents import DecisionTransformerAgent
from flowrl.agents.checkpoint import load_checkpoint
from flowrl.data import Batch, WindowSampler, load_dataset
from flowrl.train import Trainer, distributed, load_config
from tests.timeouts import scaled
from tests.train.helpers import DATASET, ROOT, flowrl, losses, write_config


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Subprocess environment with a small scripted-Pendulum Minari dataset of its own."""
    root = tmp_path_factory.mktemp("minari")
    environ = {**os.environ, "MINARI_DATASETS_PATH": str(root), "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environ.pop(key, None)
    cmd = ["collect", "--episodes", "6", "--dataset-id", DATASET, "--seed", "3"]
    done = flowrl(cmd, environ)
    assert done.returncode == 0, done.stderr
    return environ


def torchrun(env: dict[str, str], nproc: int, config: Path, *extra: str) -> None:
    """`torchrun --standalone --nproc_per_node N -m flowrl train ...`, which must succeed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(nproc), "-m", "flowrl", "train"]
    cmd += ["--config", str(config), "--no-progress", "--set", "device=cpu", *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=scaled(300))
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_train_checkpoint_and_resume_on_any_world_size(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    steps = ["--set", "eval.every=0", "--set", "checkpoint_every=4"]
    torchrun(env, 2, config, "--set", "name=full", "--set", "steps=8", *steps)
    torchrun(env, 2, config, "--set", "name=part", "--set", "steps=4", *steps)
    torchrun(env, 2, config, "--set", "name=part", "--set", "steps=8", "--resume", *steps)
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["full", "part"]

    # only rank 0 wrote: event files from one process per launch, each step logged once
    for name, launches in (("full", 1), ("part", 2)):
        events = (runs / name).glob("events.out.tfevents.*")
        assert len({path.name.split(".")[-2] for path in events}) == launches  # writer pids
        rows = [
            json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()
        ]
        logged = [r["step"] for r in rows if "train/loss" in r]
        assert logged == list(range(1, 9)), logged

    # resuming on the same world size continues every rank's streams exactly
    uninterrupted, resumed = losses(runs / "full"), losses(runs / "part")
    for step in range(1, 9):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-7), step

    state = load_checkpoint(runs / "part" / "checkpoints" / "last.pt")
    assert state["step"] == 8 and len(state["ranks"]) == 2
    samplers = [r["sampler"]["bit_generator"]["state"] for r in state["ranks"]]
    assert samplers[0] != samplers[1]

    # ... and on another world size it goes on from step 8 with reseeded samplers
    one = ["train", "--config", str(config), "--no-progress", "--set", "device=cpu", *steps]
    done = flowrl([*one, "--set", "name=part", "--set", "steps=10", "--resume"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(losses(runs / "part")) == list(range(1, 11))
    state = load_checkpoint(runs / "part" / "checkpoints" / "last.pt")
    assert state["step"] == 10 and len(state["ranks"]) == 1
    assert state["scheduler"]["last_epoch"] == 10


def test_torchrun_environment_without_a_rendezvous_is_a_clear_error(env, tmp_path):
    broken = {**env, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    done = flowrl(["train", "--set", f"out_dir={tmp_path}", "--set", "device=cpu"], broken)
    assert done.returncode == 2
    assert "gloo process group did not start" in done.stderr and "MASTER_ADDR" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- gradient equivalence
OVERRIDES = ["device=cpu", "model.dropout=0", "optim.grad_clip=1e9", "seed=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_trainer(cfg) -> Trainer:
    """What `flowrl train` builds in each process: the dataset, the agent, its trainer."""
    agent = DecisionTransformerAgent(cfg.model, return_scale=cfg.data.return_scale)
    return Trainer(cfg, agent, load_dataset(cfg.data.dataset), progress=False)


def ddp_gradient(rank: int, world: int, port: int, config: str, out: str) -> None:
    """One rank of a 2-process gloo group: one Trainer step; saves the gradients it applied."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    cfg = load_config(config, OVERRIDES)
    with distributed.process_group(torch.device("cpu")):
        trainer = make_trainer(cfg)
        trainer.train_step()
    grads = {name: p.grad for name, p in trainer.model.named_parameters()}
    torch.save(grads, Path(out) / f"rank{rank}.pt")


def gradient(trainer: Trainer, batch: Batch) -> dict[str, torch.Tensor]:
    """Gradient of the training loss over `batch` for `trainer`'s model, in one process."""
    trainer.model.zero_grad()
    trainer.agent.loss(batch.to_torch()).backward()
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


def test_ddp_gradients_equal_one_process_over_the_global_batch(env, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", env["MINARI_DATASETS_PATH"])
    config = str(write_config(tmp_path / "tiny.yaml", tmp_path / "runs"))
    torch.multiprocessing.spawn(
        ddp_gradient, args=(2, free_port(), config, str(tmp_path)), nprocs=2, join=True
    )
    averaged = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    cfg = load_config(config, OVERRIDES)
    trainer = make_trainer(cfg)  # the same initial weights as DDP's rank 0
    per_rank = [
        WindowSampler(
            trainer.dataset,
            context_len=cfg.model.context_len,
            batch_size=cfg.optim.batch_size,
            seed=cfg.seed + rank,
        ).sample()
        for rank in (0, 1)
    ]
    # the loss is a mean over real steps: DDP's mean of rank means is the global mean
    # only when the ranks have as many real steps, which full windows ensure
    assert all(b.valid.all() for b in per_rank)
    both = Batch(
        **{f.name: np.concatenate([getattr(b, f.name) for b in per_rank]) for f in fields(Batch)}
    )
    expected = gradient(trainer, both)
    alone = gradient(trainer, per_rank[0])
    assert any(not torch.allclose(alone[n], expected[n], rtol=1e-3, atol=1e-6) for n in expected)
    for grads in averaged:
        assert grads.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(grads[name], value, rtol=1e-4, atol=1e-6, msg=name)
