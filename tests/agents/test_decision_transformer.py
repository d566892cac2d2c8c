"""The Decision Transformer: token layout, causality, packed episodes, loss, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
    action_loss,
    load_agent,
)
from flowrl.agents.checkpoint import save_atomic
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.errors import UserError
from flowrl.nn import ATTENTION_KINDS

S, A = 5, 3
FLOW_KINDS = [name for name, kind in ATTENTION_KINDS.items() if kind.clamp]


def model(attention="flow", mode="window", seed=0) -> DecisionTransformer:
    torch.manual_seed(seed)
    cfg = DecisionTransformerConfig(
        state_dim=S,
        act_dim=A,
        embed_dim=32,
        n_layers=2,
        n_heads=2,
        attention=attention,
        context_mode=mode,
        context_len=20,
        max_timestep=400,
        dropout=0.1,
    )
    return DecisionTransformer(cfg).eval()


def trajectory(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, T, S, generator=g),
        torch.rand(B, T, A, generator=g) * 2 - 1,
        torch.randn(B, T, generator=g),
        torch.arange(T).repeat(B, 1),
    )


@pytest.mark.parametrize("attention", list(ATTENTION_KINDS))
def test_action_of_step_t_sees_only_the_past_and_its_state(attention):
    """a_t is predicted from R_<=t, s_<=t, a_<t: changing a_t or anything later has no effect."""
    net = model(attention)
    s, a, r, t = trajectory(2, 12)
    pred = net(s, a, r, t)
    assert pred.shape == (2, 12, A) and pred.abs().max() <= 1
    a2 = a.clone()
    a2[:, 6:] = -a2[:, 6:]
    s2 = s.clone()
    s2[:, 7:] += 1.0
    pred2 = net(s2, a2, r, t)
    torch.testing.assert_close(pred2[:, :7], pred[:, :7])
    assert not torch.allclose(pred2[:, 7:], pred[:, 7:])
    s3 = s.clone()
    s3[:, 6] += 1.0  # the state of step 6 does reach a_6
    assert not torch.allclose(net(s3, a, r, t)[:, 6], pred[:, 6])


@pytest.mark.parametrize("attention", list(ATTENTION_KINDS))
def test_packed_episodes_equal_separate_runs(attention):
    net = model(attention, "episode")
    lengths = [7, 1, 15]
    parts = [trajectory(1, n, seed=i) for i, n in enumerate(lengths)]
    packed = [torch.cat(x, 1) for x in zip(*parts, strict=True)]
    cu = torch.tensor([0, 7, 8, 23])
    out = net(*packed, cu_seqlens=cu)
    for i, part in enumerate(parts):
        torch.testing.assert_close(out[:, cu[i] : cu[i + 1]], net(*part), rtol=1e-5, atol=1e-6)


def test_loss_ignores_padded_steps():
    pred, target = torch.rand(2, 4, A), torch.rand(2, 4, A)
    valid = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    expected = ((pred - target) ** 2)[valid].mean()
    torch.testing.assert_close(action_loss(pred, target, valid), expected)
    target2 = target.clone()
    target2[0, 2:] = 100.0
    torch.testing.assert_close(action_loss(pred, target2, valid), expected)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="context_mode"):
        DecisionTransformerConfig(S, A, context_mode="full")
    with pytest.raises(UserError, match=r"model\.attention_clamp=0"):
        DecisionTransformerConfig(S, A, attention_clamp=0.0)
    with pytest.raises(UserError, match="only flow attentions have a clamp"):
        DecisionTransformerConfig(S, A, attention="softmax", attention_clamp=20.0)
    with pytest.raises(UserError, match=r"model\.attention_eps=-1e-09"):
        DecisionTransformerConfig(S, A, attention_eps=-1e-9)
    with pytest.raises(UserError, match="only flow attentions have an eps"):
        DecisionTransformerConfig(S, A, attention="softmax", attention_eps=1e-9)


@pytest.mark.parametrize("attention", FLOW_KINDS)
@pytest.mark.parametrize("setting, value", [("clamp", 0.3), ("eps", 0.05)])
def test_clamp_and_eps_reach_the_parallel_and_recurrent_forms(attention, setting, value, tmp_path):
    """A small clamp, or a large eps, is active on random weights: it changes the output, the
    whole-sequence and token-by-token forms agree under it, and a checkpoint keeps it."""
    spec = model(attention, "episode")
    key = f"attention_{setting}"
    tight = DecisionTransformer(dataclasses.replace(spec.cfg, **{key: value})).eval()
    tight.load_state_dict(spec.state_dict())
    assert [getattr(b.attn, setting) for b in tight.blocks] == [value, value]
    x = torch.randn(2, 24, 32, generator=torch.Generator().manual_seed(1))
    attn, spec_attn = tight.blocks[0].attn, spec.blocks[0].attn
    with torch.no_grad():
        whole = attn(x)
        assert not torch.allclose(whole, spec_attn(x), atol=1e-4)
        state, steps = None, []
        for t in range(x.shape[1]):
            y, state = attn.step(x[:, t], state)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), whole, rtol=1e-4, atol=1e-5)
    path = tmp_path / "agent.pt"
    save_atomic({"agent": agent_of(tight).state_dict()}, path)
    assert getattr(load_agent(path).model.cfg, key) == value


@pytest.mark.parametrize("attention", FLOW_KINDS)
def test_set_attention_eps_gives_the_model_built_with_that_eps(attention):
    """A trained model set to another eps computes what the same weights built with it do,
    whole-sequence and in the acting stack; kinds without an eps refuse it by its key."""
    spec = model(attention, "episode")
    built = DecisionTransformer(dataclasses.replace(spec.cfg, attention_eps=0.05)).eval()
    built.load_state_dict(spec.state_dict())
    spec.set_attention_eps(0.05)
    assert spec.cfg.attention_eps == 0.05
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(2))
    stack, expected = RecurrentStack(spec, 2), RecurrentStack(built, 2)
    with torch.no_grad():
        assert torch.equal(spec.blocks[0](x), built.blocks[0](x))
        for token in x.unbind(1):
            assert torch.equal(stack.step(token), expected.step(token))
    with pytest.raises(UserError, match=r"model\.attention_eps=0\.0: expected a number > 0"):
        spec.set_attention_eps(0.0)
    with pytest.raises(UserError, match="only flow attentions have an eps"):
        model("softmax", "episode").set_attention_eps(1e-9)


def agent_of(net: DecisionTransformer) -> DecisionTransformerAgent:
    return DecisionTransformerAgent.from_parts(
        net,
        Normalizer.from_arrays(
            np.arange(S, dtype=np.float32),
            np.ones(S, np.float32),
            np.full(A, 2.0, np.float32),
            100.0,
        ),
        dataset="d",
        env_id="e",
        ref_min_score=-10.0,
        ref_max_score=10.0,
        target_returns=[5.0],
    )


def test_checkpoint_round_trip(tmp_path):
    net = model("softmax")
    path = tmp_path / "ckpt" / "agent.pt"
    save_atomic({"agent": agent_of(net).state_dict()}, path)
    assert [p.name for p in path.parent.iterdir()] == ["agent.pt"]
    loaded = load_agent(path)
    s, a, r, t = trajectory(1, 9)
    torch.testing.assert_close(loaded.model(s, a, r, t), net(s, a, r, t))
    assert loaded.model.cfg == net.cfg
    np.testing.assert_array_equal(loaded.normalizer.action_scale, np.full(A, 2.0))
    assert loaded.normalized_score(np.array([0.0])).tolist() == [50.0]


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_agent(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a flowrl checkpoint: not a complete PyTorch file"):
        load_agent(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not a flowrl checkpoint"):
        load_agent(other)


@pytest.mark.parametrize("attention", FLOW_KINDS)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_recurrent_stack_equals_the_blocks_step(activation, attention):
    """RecurrentStack (in place) gives the outputs of DecisionTransformer.step, with resets,
    for every kind with an in-place step (the stack reads the kind's feature map)."""
    torch.manual_seed(3)
    cfg = dataclasses.replace(model(attention, "episode").cfg, activation=activation)
    net = DecisionTransformer(cfg).eval()
    B, E = 3, net.cfg.embed_dim
    tokens = torch.randn(20, B, E, generator=torch.Generator().manual_seed(4))
    stack, states = RecurrentStack(net, B), [None] * net.cfg.n_layers
    with torch.no_grad():
        for i, token in enumerate(tokens):
            if i == 8:
                rows = torch.tensor([True, False, True])
                stack.reset(rows)
                states = [s.reset(rows) for s in states]
            expected, states = net.step(token, states)
            got = stack.step(token)
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5), i


def test_recurrent_stack_refuses_a_kind_without_an_inplace_step():
    with pytest.raises(ValueError, match="no in-place recurrent step"):
        RecurrentStack(model("softmax", "episode"), 2)


def test_a_flow_relu_checkpoint_from_before_the_single_op_acts_as_it_did(tmp_path):
    """tests/agents/data/flow_relu_fa9eecc.pt was written by commit fa9eecc, when flow-relu
    was a separate op acting through the generic step stack, with the actions it took on
    stored observations. Loaded now it acts the same, recurrently (in place) and by
    recomputing the episode."""
    path = Path(__file__).parent / "data" / "flow_relu_fa9eecc.pt"
    stored = torch.load(path, weights_only=False)
    agent = load_agent(path)
    assert agent.model.cfg.attention == "flow-relu"
    assert {b.attn.feature_map for b in agent.model.blocks} == {"relu"}
    obs, rewards = stored["observations"].numpy(), stored["rewards"].numpy()
    for recurrent in (True, False):
        policy = agent.policy(2, 41, recurrent=recurrent)
        policy.reset(np.ones(2, bool), np.full(2, 5.0))
        actions = []
        for t in range(obs.shape[0]):
            actions.append(policy.act(obs[t]))
            policy.observe(rewards[t])
        np.testing.assert_allclose(
            np.stack(actions, 1), stored["actions"].numpy(), rtol=1e-4, atol=1e-5
        )


def test_a_flow_sink_checkpoint_says_the_kind_was_removed():
    """tests/agents/data/flow_sink_fa9eecc.pt: a `flow-sink` agent from commit fa9eecc."""
    path = Path(__file__).parent / "data" / "flow_sink_fa9eecc.pt"
    with pytest.raises(UserError, match=r"flow_sink_fa9eecc\.pt: .*'flow-sink' was removed"):
        load_agent(path)
