"""Acting: recurrent flow inference equals recomputing the context; rows are independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.nn import ATTENTION_KINDS

S, A = 4, 2
FLOW_KINDS = [name for name, kind in ATTENTION_KINDS.items() if kind.recurrent]


def agent(
    mode: str, attention: str = "flow", context_len: int = 20, max_timestep: int = 1000
) -> DecisionTransformerAgent:
    torch.manual_seed(1)
    cfg = DecisionTransformerConfig(
        state_dim=S,
        act_dim=A,
        embed_dim=32,
        n_layers=2,
        n_heads=2,
        attention=attention,
        context_mode=mode,
        context_len=context_len,
        max_timestep=max_timestep,
    )
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(
            np.zeros(S, np.float32),
            np.full(S, 2.0, np.float32),
            np.full(A, 3.0, np.float32),
            10.0,
        ),
        dataset="d",
        env_id=None,
    )


def rollout(policy, steps: int, num_envs: int, seed: int = 0, resets=()) -> np.ndarray:
    """Random observations and rewards fed through `policy`; returns all actions."""
    rng = np.random.default_rng(seed)
    policy.reset(np.ones(num_envs, bool), np.full(num_envs, 20.0))
    actions = []
    for t in range(steps):
        if t in resets:
            rows = np.zeros(num_envs, bool)
            rows[0] = True
            policy.reset(rows, np.full(num_envs, 15.0))
        actions.append(policy.act(rng.normal(size=(num_envs, S))))
        policy.observe(rng.normal(size=num_envs))
    return np.stack(actions, 1)


@pytest.mark.parametrize("attention", FLOW_KINDS)
def test_recurrent_equals_recomputing_the_whole_episode(attention):
    ag = agent("episode", attention=attention)
    recurrent = ag.policy(3, 301, recurrent=True)
    fast = rollout(recurrent, 300, 3, resets=(120,))
    assert all(not s.kv.requires_grad for s in recurrent.stack.attention), "acting built a graph"
    slow = rollout(ag.policy(3, 301, recurrent=False), 300, 3, resets=(120,))
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)
    assert np.abs(fast).max() <= 3.0 and np.abs(fast).max() > 0.1


def test_recurrent_acting_past_the_last_timestep_embedding():
    """Episodes longer than max_timestep reuse the last embedding in both paths."""
    ag = agent("episode", max_timestep=8)
    fast = rollout(ag.policy(2, 21, recurrent=True), 20, 2)
    slow = rollout(ag.policy(2, 21, recurrent=False), 20, 2)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_window_policy_sees_only_the_last_k_steps():
    """With K = 5, an action at step t is unchanged by observations before t - 4."""
    ag = agent("window", context_len=5)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(12, 1, S))
    rewards = rng.normal(size=(12, 1))
    changed = obs.copy()
    changed[:3] += 5.0
    out = []
    for o in (obs, changed):
        policy = ag.policy(1, 13)
        policy.reset(np.ones(1, bool), np.full(1, 20.0))
        acts = []
        for t in range(12):
            acts.append(policy.act(o[t]))
            policy.observe(rewards[t] * 0)  # same returns-to-go in both runs
        out.append(np.concatenate(acts))
    np.testing.assert_allclose(out[0][8:], out[1][8:], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0][:3], out[1][:3])


def test_a_row_acts_the_same_alone_as_in_a_batch():
    ag = agent("window")
    rng = np.random.default_rng(5)
    obs, rewards = rng.normal(size=(30, 3, S)), rng.normal(size=(30, 3))
    runs = []
    for rows in (slice(0, 3), slice(1, 2)):
        policy = ag.policy(rows.stop - rows.start, 31)
        policy.reset(np.ones(rows.stop - rows.start, bool), np.full(3, 20.0)[rows])
        acts = []
        for t in range(30):
            acts.append(policy.act(obs[t, rows]))
            policy.observe(rewards[t, rows])
        runs.append(np.stack(acts, 1))
    np.testing.assert_allclose(runs[0][1:2], runs[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(runs[0][0], runs[0][1])


@pytest.mark.parametrize(("mode", "recurrent"), [("window", False), ("episode", False)])
def test_the_history_grows_with_the_episodes_not_with_the_horizon(mode, recurrent, monkeypatch):
    """A horizon of 10^9 steps costs no memory up front (it was M x T x dims floats: 5.7 GB
    for a T-Maze of 10^8 steps); episodes longer than the first allocation act exactly as
    with a history sized to them, partial resets included."""
    monkeypatch.setattr("flowrl.agents.policy.INITIAL_HISTORY", 16)
    ag = agent(mode, max_timestep=200, context_len=6)
    huge = ag.policy(3, 10**9, recurrent=recurrent)
    assert huge.states.shape[1] == 16
    grown = rollout(huge, 70, 3, resets=(40,))
    assert 64 < huge.states.shape[1] <= 128  # doubled as the longest episode grew, no more
    exact = rollout(ag.policy(3, 71, recurrent=recurrent), 70, 3, resets=(40,))
    np.testing.assert_array_equal(grown, exact)


def test_recurrent_acting_holds_two_steps_however_long_the_episode():
    """Acting through the recurrent state reads only the current step: two history slots,
    never grown, acting as recomputing the whole episode does, partial resets included."""
    ag = agent("episode", max_timestep=200, context_len=6)
    flat = ag.policy(3, 10**9, recurrent=True)
    recurrent = rollout(flat, 70, 3, resets=(40,))
    assert all(b.shape[1] == 2 for b in (flat.states, flat.actions, flat.returns_to_go))
    recomputed = rollout(ag.policy(3, 71, recurrent=False), 70, 3, resets=(40,))
    np.testing.assert_allclose(recurrent, recomputed, rtol=1e-4, atol=1e-5)


def test_an_agent_without_a_model_says_so():
    fresh = DecisionTransformerAgent()
    with pytest.raises(RuntimeError, match="no model yet: fit it on a dataset, or load one"):
        _ = fresh.model
    with pytest.raises(RuntimeError, match="no model yet"):
        fresh.policy(1, 10)
