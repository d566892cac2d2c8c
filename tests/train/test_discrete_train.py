"""`flowrl collect`, `flowrl train` and `flowrl eval` on a discrete-action T-Maze dataset,
end to end in subprocesses."""

from __future__ import annotations

import json
import math
import os

from flowrl.agents import load_agent
from tests.train.helpers import ROOT, flowrl, losses, train, write_config

DATASET = "test/tmaze-passive-v0"


def test_train_and_evaluate_a_discrete_agent_in_a_tmaze(tmp_path):
    env = {
        **os.environ,
        "MINARI_DATASETS_PATH": str(tmp_path / "minari"),
        "PYTHONPATH": str(ROOT),
    }
    collect = [
        "collect", "--env", "flowrl/TMazePassive-v0", "--env-kwargs", "length=10",
        "--policy", "tmaze-noisy", "--episodes", "20", "--dataset-id", DATASET, "--seed", "0",
    ]  # fmt: skip
    done = flowrl(collect, env)
    assert done.returncode == 0, done.stderr

    config = write_config(
        tmp_path / "tmaze.yaml",
        tmp_path / "runs",
        context_mode="episode",
        context_len=16,
        timestep_embedding="none",
    )
    sets = [f"data.dataset={DATASET}", "data.return_scale=1", "eval.every=0", "steps=40"]
    train(env, config, *[arg for s in sets for arg in ("--set", s)])
    run = tmp_path / "runs" / "tiny"
    logged = losses(run)
    # cross-entropy over 4 actions: near ln 4 from the near-uniform initial head (a squared
    # error on one-hot targets would start near 0.25), then lower
    assert abs(logged[1] - math.log(4)) < 0.2, logged[1]
    assert max(logged[s] for s in range(36, 41)) < logged[1] - 0.3, logged

    agent = load_agent(run / "checkpoints" / "last.pt")
    cfg = agent.model.cfg
    assert cfg.discrete and cfg.act_dim == 4 and cfg.timestep_embedding == "none"
    assert agent.env_id == "flowrl/TMazePassive-v0" and agent.env_kwargs["length"] == 10

    out = tmp_path / "eval.json"
    evaluate = [
        "eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--episodes", "3",
        "--num-envs", "2", "--env-kwargs", "length=30", "--sample-actions", "--json", str(out),
    ]  # fmt: skip
    done = flowrl(evaluate, env)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["env_kwargs"]["length"] == 30 and result["sample_actions"] is True
    (target,) = result["targets"].values()
    assert target["episodes"] == 3 and target["length_mean"] == 31  # passive: L + 1 steps
