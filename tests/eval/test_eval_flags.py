"""`flowrl eval` rejects bad flags in one line before it reads a checkpoint or runs an env."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.agents.checkpoint import save_atomic
from flowrl.cli import main


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(state_dim=3, act_dim=1, embed_dim=16, n_layers=1, n_heads=2)
    agent = DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(3), np.ones(3), np.full(1, 2.0), 100.0),
        dataset="tiny",
        env_id="Pendulum-v1",
        target_returns=[-150.0],
    )
    path = tmp_path / "last.pt"
    save_atomic({"agent": agent.state_dict()}, path)
    return path


def run_eval(checkpoint, *flags):
    return main(["eval", "--checkpoint", str(checkpoint), "--episodes", "1", "--num-envs", "1",
                 "--max-steps", "3", *flags])  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target", "nan"], "--target nan: expected a finite return"),
        (["--target", "inf"], "--target inf"),
        (["--target=-100", "--target=-inf"], "--target -inf"),
        (["--max-steps", "0"], "--max-steps 0: expected a positive"),
        (["--max-steps", "-4"], "--max-steps -4"),
        (["--num-envs", "0"], "--num-envs 0: expected a positive integer"),
        (["--episodes", "-2"], "--episodes -2: expected a positive integer"),
        (["--video-episodes", "-1"], "--video-episodes -1: expected a positive integer"),
    ],
)
def test_bad_flags(checkpoint, capsys, flags, message):
    assert run_eval(checkpoint, *flags) == 2
    out = capsys.readouterr()
    assert message in out.err and "Traceback" not in out.err
    assert "target" not in out.out  # no evaluation ran


def test_unwritable_json_is_caught_before_the_evaluation(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_eval(checkpoint, "--json", str(blocker / "results.json")) == 2
    out = capsys.readouterr()
    assert f"--json {blocker / 'results.json'}: cannot write it" in out.err
    assert out.out == ""


def test_json_is_written_once_the_evaluation_is_done(checkpoint, tmp_path):
    path = tmp_path / "new" / "results.json"
    assert run_eval(checkpoint, "--json", str(path), "--target=-100") == 0
    assert set(json.loads(path.read_text())["targets"]) == {"-100"}
