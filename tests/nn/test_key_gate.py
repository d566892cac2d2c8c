"""The key gate of `flow-relu` (`FlowAttention(key_gate=True)`): it equals Flow-Attention
on gated keys in float64, a closed gate takes a token out of every later read exactly,
and the recurrent forms step it as the whole-sequence form computes it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowrl.agents import DecisionTransformer, DecisionTransformerConfig
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.errors import UserError
from flowrl.nn import FlowAttention, make_attention
from flowrl.ops.flow_attention.naive import naive_flow_attention
from flowrl.ops.flow_attention.protocol import FlowBatch, FlowOptions

E, H = 16, 2


def gated_layer(seed: int = 0) -> FlowAttention:
    torch.manual_seed(seed)
    layer = FlowAttention(E, H, feature_map="relu", key_gate=True).double().eval()
    with torch.no_grad():  # a gate that varies from token to token, closed for some
        layer.key_gate.weight.normal_(0.0, 0.5)
    return layer


def test_equals_flow_attention_on_gated_keys_in_float64():
    layer = gated_layer()
    x = torch.randn(2, 40, E, dtype=torch.float64)
    q, k, v = layer.qkv(x).unflatten(-1, (3, H, E // H)).unbind(-3)
    gate = (layer.key_gate(x) + 0.5).clamp(0.0, 1.0)
    assert 0 < (gate == 0).float().mean() < 1  # some tokens silent, not all
    batch = FlowBatch(*(t.transpose(1, 2) for t in (q, k * gate.unsqueeze(-1), v)))
    expected, _ = naive_flow_attention(batch, FlowOptions(feature_map="relu"), False)
    expected = layer.proj(expected.transpose(1, 2).flatten(-2))
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-12)


def test_tokens_with_a_closed_gate_are_not_read():
    """After the last open token, the contents of closed tokens do not change the output."""
    layer = gated_layer()
    with torch.no_grad():  # gate = clamp(0.5 + 10 x_0): open where x_0 > 0, closed where < -0.05
        layer.key_gate.weight.zero_()
        layer.key_gate.weight[:, 0] = 10.0
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 30, E, dtype=torch.float64, generator=g)
    x[0, :10, 0] = 1.0  # open
    x[0, 10:, 0] = -1.0  # closed
    other = x.clone()
    other[0, 10:-1, 1:] = torch.randn(19, E - 1, dtype=torch.float64, generator=g)
    torch.testing.assert_close(layer(other)[0, -1], layer(x)[0, -1], rtol=1e-12, atol=1e-12)
    shut = x.clone()
    shut[0, 5, 0] = -1.0  # closing an open token does change it
    assert not torch.allclose(layer(shut)[0, -1], layer(x)[0, -1])


def test_step_by_step_equals_the_whole_sequence():
    layer = gated_layer()
    x = torch.randn(3, 25, E, dtype=torch.float64)
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, 1), layer(x), rtol=1e-9, atol=1e-10)


def test_recurrent_stack_steps_the_gate():
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=4, act_dim=2, embed_dim=E, n_layers=2, n_heads=H, attention="flow-relu",
        context_mode="episode", dropout=0.0, key_gate=True,
    )  # fmt: skip
    net = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for block in net.blocks:
            block.attn.key_gate.weight.normal_(0.0, 0.5)
    tokens = torch.randn(12, 3, E)
    stack, states = RecurrentStack(net, 3), [None] * cfg.n_layers
    with torch.no_grad():
        for token in tokens:
            expected, states = net.step(token, states)
            torch.testing.assert_close(stack.step(token), expected, rtol=1e-5, atol=1e-5)
    plain = DecisionTransformer(dataclasses.replace(cfg, key_gate=False))
    assert len(list(net.parameters())) == len(list(plain.parameters())) + 2 * cfg.n_layers


def test_only_relu_features_take_a_key_gate():
    with pytest.raises(UserError, match=r"model\.key_gate=true needs ReLU features"):
        DecisionTransformerConfig(4, 2, attention="flow", key_gate=True)
    with pytest.raises(UserError, match=r"model\.key_gate="):
        DecisionTransformerConfig(4, 2, attention="flow-relu", key_gate="yes")
    with pytest.raises(ValueError, match="no key gate"):
        make_attention("softmax", E, H, key_gate=True)
    with pytest.raises(ValueError, match="key_gate needs ReLU features"):
        FlowAttention(E, H, feature_map="sigmoid", key_gate=True)


def test_the_penalty_closes_gates_that_the_loss_does_not_need():
    """Training on the penalty alone drives every gate to exactly 0; it needs the gate."""
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=4, act_dim=2, embed_dim=E, n_heads=H, n_layers=1, attention="flow-relu",
        context_mode="episode", key_gate=True, key_gate_penalty=1.0,
    )  # fmt: skip
    net = DecisionTransformer(cfg).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    states, actions = torch.randn(2, 10, 4), torch.zeros(2, 10, 2)
    returns, steps = torch.zeros(2, 10), torch.arange(10).repeat(2, 1)
    for _ in range(50):
        net(states, actions, returns, steps)
        optimiser.zero_grad()
        net.key_gate_mean().backward()
        optimiser.step()
    net(states, actions, returns, steps)
    assert net.key_gate_mean().item() == 0.0
    with pytest.raises(UserError, match=r"model\.key_gate_penalty=0.1 needs model\.key_gate"):
        DecisionTransformerConfig(4, 2, attention="flow-relu", key_gate_penalty=0.1)
    with pytest.raises(UserError, match=r"model\.key_gate_penalty=-1"):
        DecisionTransformerConfig(4, 2, attention="flow-relu", key_gate=True, key_gate_penalty=-1.0)
