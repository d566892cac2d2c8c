"""Evaluation envs made with the dataset's recorded kwargs, overrides, and Discrete envs."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
    load_agent,
)
from flowrl.cli import main
from flowrl.envs.make import check_env_kwarg_types, parse_env_kwargs
from flowrl.envs.tmaze_policies import TMazeOracle
from flowrl.errors import UserError
from flowrl.eval import evaluate
from tests.timeouts import scaled

TMAZE = "flowrl/TMazeActive-v0"


class OraclePolicy:
    """A scripted discrete policy with the evaluator's interface, one oracle per env: it
    stands in for a discrete agent and acts with integer indices, as the evaluator expects."""

    def __init__(self, num_envs: int) -> None:
        self.oracles = [TMazeOracle() for _ in range(num_envs)]
        self.rng = np.random.default_rng(0)

    def reset(self, rows: np.ndarray, target_returns: np.ndarray, seeds=None) -> None:
        for row in np.flatnonzero(rows):
            self.oracles[row].reset(self.rng)

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.array([o(obs) for o, obs in zip(self.oracles, observations, strict=True)])

    def observe(self, rewards: np.ndarray) -> None:
        pass


class OracleAgent(DecisionTransformerAgent):
    def policy(self, num_envs: int, max_steps: int, **_) -> OraclePolicy:
        return OraclePolicy(num_envs)


def make_agent(
    cls=DecisionTransformerAgent, env_id=TMAZE, env_kwargs=None, state_dim=2, act_dim=4
) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=state_dim, act_dim=act_dim, embed_dim=8, n_layers=1, n_heads=1, context_len=4
    )
    return cls.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(state_dim), np.ones(state_dim), np.ones(act_dim), 1.0),
        dataset="d",
        env_id=env_id,
        env_kwargs=env_kwargs or {},
        ref_min_score=0.0,
        ref_max_score=1.0,
        target_returns=[1.0],
    )


def test_eval_envs_use_the_recorded_kwargs_unless_told_otherwise():
    agent = make_agent(OracleAgent, env_kwargs={"length": 9, "noise_dims": 1}, state_dim=3)
    kwargs = {"target_returns": [1.0], "episodes": 3, "num_envs": 2, "max_steps": 5}
    (recorded,) = evaluate(agent, **kwargs)
    np.testing.assert_array_equal(recorded.lengths, [12, 12, 12])  # T = L + 3, past max_steps
    np.testing.assert_array_equal(recorded.returns, [1.0, 1.0, 1.0])
    (longer,) = evaluate(agent, **kwargs, env_kwargs={"length": 40})  # noise_dims stays 1
    np.testing.assert_array_equal(longer.lengths, [43, 43, 43])
    np.testing.assert_array_equal(longer.normalized, [100.0, 100.0, 100.0])
    # another env id does not inherit the agent's kwargs
    kwargs["env_kwargs"] = {"noise_dims": 1}
    (passive,) = evaluate(agent, **kwargs, env_id="flowrl/TMazePassive-v0")
    np.testing.assert_array_equal(passive.lengths, [11, 11, 11])  # its default length, 10


def test_discrete_env_errors():
    with pytest.raises(UserError, match="needs one integer action per env"):
        evaluate(make_agent(), target_returns=[1.0], episodes=1, num_envs=1)
    message = (
        r"flowrl/TMazeActive-v0 do not match: Discrete\(3\) actions in the agent, Discrete\(4\)"
    )
    with pytest.raises(UserError, match=message):
        evaluate(make_agent(act_dim=3), target_returns=[1.0], episodes=1, num_envs=1)
    with pytest.raises(UserError, match="got an unexpected keyword argument 'lenght'"):
        evaluate(make_agent(), target_returns=[1.0], episodes=1, env_kwargs={"lenght": 5})
    with pytest.raises(UserError, match="length must be an integer >= 1"):
        evaluate(make_agent(), target_returns=[1.0], episodes=1, env_kwargs={"length": 0})


def test_parse_env_kwargs():
    items = ["length=500", "noise_dims=2,flag=true", "name=abc, ratio=0.5", "dims=[1, 2],x="]
    assert parse_env_kwargs(items) == {
        "length": 500,
        "noise_dims": 2,
        "flag": True,
        "name": "abc",
        "ratio": 0.5,
        "dims": [1, 2],
        "x": "",
    }
    for bad in ("length", "=5", "2x=1"):
        with pytest.raises(UserError, match="expected key=value"):
            parse_env_kwargs([bad])


def test_checkpoints_keep_env_kwargs(tmp_path):
    agent = make_agent(env_kwargs={"length": 7, "noise_dims": 1})
    path = tmp_path / "agent.pt"
    torch.save({"agent": agent.state_dict()}, path)
    assert load_agent(path).env_kwargs == {"length": 7, "noise_dims": 1}
    state = agent.state_dict()
    del state["env_kwargs"]  # a checkpoint from before env kwargs existed
    assert DecisionTransformerAgent.from_state_dict(state).env_kwargs == {}


def test_cli_eval_env_kwargs(tmp_path, capsys):
    path = tmp_path / "agent.pt"
    agent = make_agent(env_id="Pendulum-v1", env_kwargs={"g": 9.0}, state_dim=3, act_dim=1)
    torch.save({"agent": agent.state_dict()}, path)
    args = ["eval", "--checkpoint", str(path), "--episodes", "1", "--max-steps", "3"]
    out = tmp_path / "r.json"
    assert main([*args, "--env-kwargs", "g=2.5", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["env_kwargs"] == {"g": 2.5}
    assert main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["env_kwargs"] == {"g": 9.0}
    capsys.readouterr()
    assert main([*args, "--env-kwargs", "gravity=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flowrl eval: error: cannot make environment 'Pendulum-v1'")
    assert "gravity" in err and "\n" not in err


def test_a_key_given_twice_is_an_error():
    for items in (["length=5,length=7"], ["length=5", "length=7"]):
        with pytest.raises(UserError, match="length is given twice"):
            parse_env_kwargs(items)


def test_true_or_false_where_the_env_takes_a_number_and_the_other_way_round(tmp_path, capsys):
    check_env_kwarg_types("flowrl/TMazePassive-v0", {"length": 5, "flag": True, "noise_dims": 0})
    for kwargs, message in (
        ({"length": True}, "length=True for flowrl/TMazePassive-v0: expected a number"),
        ({"flag": 1}, "flag=1 for flowrl/TMazePassive-v0: expected true or false"),
    ):
        with pytest.raises(UserError, match=message):
            check_env_kwarg_types("flowrl/TMazePassive-v0", kwargs)
    with pytest.raises(ValueError, match="T-Maze length must be an integer"):
        gym.make("flowrl/TMazePassive-v0", length=True)  # the env's own check, without flowrl
    # through flowrl eval: one line, before any episode runs
    path = tmp_path / "agent.pt"
    agent = make_agent(env_id="flowrl/TMazePassive-v0", env_kwargs={"length": 5})
    torch.save({"agent": agent.state_dict()}, path)
    args = ["eval", "--checkpoint", str(path), "--episodes", "1", "--max-steps", "3"]
    assert main([*args, "--env-kwargs", "length=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert "length=True" in err and "expected a number" in err and "\n" not in err


def test_env_kwargs_are_read_as_settings_are_integers_in_base_10(tmp_path):
    """YAML 1.1 read `010` as octal 8 and `off` as False; flowrl reads them as its settings."""
    items = ["length=010,noise_dims=-007,name=off,code=0x10,time=1:30,dims=[010, 2]"]
    assert parse_env_kwargs(items) == {
        "length": 10,
        "noise_dims": -7,
        "name": "off",
        "code": "0x10",
        "time": "1:30",
        "dims": [10, 2],
    }
    path, out = tmp_path / "agent.pt", tmp_path / "r.json"
    agent = make_agent(env_id="Pendulum-v1", env_kwargs={"g": 9.0}, state_dim=3, act_dim=1)
    torch.save({"agent": agent.state_dict()}, path)
    args = ["eval", "--checkpoint", str(path), "--episodes", "1", "--max-steps", "3"]
    done = subprocess.run(
        [sys.executable, "-m", "flowrl", *args, "--env-kwargs", "g=010", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=scaled(600),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["env_kwargs"] == {"g": 10}
