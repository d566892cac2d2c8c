"""`flowrl eval` rejects bad flags in one line before it reads a checkpoint or runs an env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]


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
        (["--attention-eps", "0"], "--attention-eps 0.0: expected a number > 0"),
        (["--attention-eps=-1e-9"], "--attention-eps -1e-09: expected a number > 0"),
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


def test_attention_eps_is_what_the_agent_acts_with_and_the_json_says(checkpoint, tmp_path):
    default, small = tmp_path / "default.json", tmp_path / "small.json"
    assert run_eval(checkpoint, "--json", str(default)) == 0
    assert run_eval(checkpoint, "--json", str(small), "--attention-eps", "1e-9") == 0
    assert json.loads(default.read_text())["attention_eps"] == 1e-6  # the checkpoint's
    assert json.loads(small.read_text())["attention_eps"] == 1e-9


def test_attention_eps_for_a_kind_without_one_names_the_flag_and_the_kind(tmp_path, capsys):
    cfg = DecisionTransformerConfig(state_dim=3, act_dim=1, embed_dim=16, attention="softmax")
    agent = DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(3), np.ones(3), np.full(1, 2.0), 100.0),
        env_id="Pendulum-v1",
        target_returns=[-150.0],
    )
    path = tmp_path / "softmax.pt"
    save_atomic({"agent": agent.state_dict()}, path)
    assert run_eval(path, "--attention-eps", "1e-9") == 2
    err = capsys.readouterr().err
    assert "--attention-eps 1e-09: the checkpoint's model.attention_eps=1e-09: only flow " in err
    assert "not model.attention=softmax" in err and "Traceback" not in err


def flowrl_eval(checkpoint, *flags) -> subprocess.CompletedProcess:
    """`flowrl eval` of one episode in a process of its own."""
    args = ["eval", "--checkpoint", str(checkpoint), "--episodes", "1", "--num-envs", "1"]
    return subprocess.run(
        [sys.executable, "-m", "flowrl", *args, *flags],
        capture_output=True,
        text=True,
        timeout=scaled(600),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_targets_that_print_alike_keep_distinct_keys_and_equal_ones_are_refused(
    checkpoint, tmp_path
):
    out = tmp_path / "r.json"
    flags = ["--max-steps", "3", "--target=-150", "--target=-150.00001", "--json", str(out)]
    done = flowrl_eval(checkpoint, *flags)
    assert done.returncode == 0, done.stderr
    targets = json.loads(out.read_text())["targets"]
    assert {k: v["target_return"] for k, v in targets.items()} == {
        "-150.0": -150.0,
        "-150.00001": -150.00001,
    }
    assert "target -150.0:" in done.stdout and "target -150.00001:" in done.stdout
    same = flowrl_eval(checkpoint, "--target", "1", "--target", "1.0")
    assert same.returncode == 2 and "--target 1.0: given twice" in same.stderr, same.stderr
    assert len(same.stderr.strip().splitlines()) == 1


def test_a_normalised_score_of_episodes_cut_short_says_so(tmp_path):
    """Pendulum's episodes last 200 steps: --max-steps 3 scores 3-step returns against
    whole-episode reference returns, and says so in one line; 200 steps do not."""
    cfg = DecisionTransformerConfig(state_dim=3, act_dim=1, embed_dim=16, n_layers=1, n_heads=2)
    agent = DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(3), np.ones(3), np.full(1, 2.0), 100.0),
        env_id="Pendulum-v1",
        ref_min_score=-1500.0,
        ref_max_score=-150.0,
        target_returns=[-150.0],
    )
    path = tmp_path / "last.pt"
    save_atomic({"agent": agent.state_dict()}, path)
    cut = flowrl_eval(path, "--max-steps", "3")
    assert cut.returncode == 0, cut.stderr
    notes = [line for line in cut.stderr.splitlines() if "warning" in line]
    assert len(notes) == 1 and "Traceback" not in cut.stderr, cut.stderr
    assert "max_steps=3 before the env ended them (its own limit is 200 steps)" in notes[0]
    whole = flowrl_eval(path, "--max-steps", "200")
    assert whole.returncode == 0 and "warning" not in whole.stderr, whole.stderr


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("banana", "--device='banana': expected auto, cpu, cuda or cuda:N"),
        ("cuda:x", "--device='cuda:x': expected auto, cpu, cuda or cuda:N"),
        ("cuda", "--device='cuda' but CUDA is not available on this machine"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(checkpoint, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = flowrl_eval(checkpoint, "--device", device)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [f"flowrl eval: error: {message}"]
