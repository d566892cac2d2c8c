"""Attention layers: one interface, switchable by name, causal, packed-sequence aware."""

from __future__ import annotations

import pytest
import torch

from flowrl.agents.decision_transformer import DEFAULT_ATTENTION
from flowrl.nn import ATTENTION_KINDS, FlowAttention, SoftmaxAttention, make_attention
from flowrl.nn.attention import spread_over_heads
from flowrl.ops import flow_attention
from flowrl.ops.flow_attention import FlowOptions


def layer(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return make_attention(name, 32, 4, dropout=0.1).eval()


KINDS = list(ATTENTION_KINDS)
RECURRENT_KINDS = [name for name, kind in ATTENTION_KINDS.items() if kind.recurrent]


@pytest.mark.parametrize("name", KINDS)
def test_layers_are_causal_and_shape_preserving(name):
    attn = layer(name)
    x = torch.randn(2, 30, 32)
    y = attn(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 17:] = torch.randn(2, 13, 32)
    y2 = attn(x2)
    torch.testing.assert_close(y2[:, :17], y[:, :17])
    assert not torch.allclose(y2[:, 17:], y[:, 17:])


@pytest.mark.parametrize("name", KINDS)
def test_packed_sequences_equal_separate_runs(name):
    attn = layer(name)
    lengths = [5, 12, 1]
    xs = [torch.randn(1, n, 32) for n in lengths]
    cu = torch.tensor([0, 5, 17, 18])
    packed = attn(torch.cat(xs, 1), cu_seqlens=cu)
    for i, x in enumerate(xs):
        torch.testing.assert_close(packed[:, cu[i] : cu[i + 1]], attn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", RECURRENT_KINDS)
def test_step_and_state_equal_full_forward(name):
    attn = layer(name)
    x = torch.randn(3, 25, 32)
    full = attn(x)
    head, state = attn(x[:, :10], return_state=True)
    tail = attn(x[:, 10:20], state=state)
    steps = []
    _, state = attn(x[:, :20], return_state=True)
    for t in range(20, 25):
        y, state = attn.step(x[:, t], state)
        steps.append(y)
    got = torch.cat([head, tail, torch.stack(steps, 1)], 1)
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
    attn = layer("flow")
    x = torch.randn(2, 8, 32)
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_builds_what_its_entry_says(name):
    """The layer carries the kind's feature map and clamp; every backend it lists builds;
    a recurrent kind steps, the others refuse to."""
    kind = ATTENTION_KINDS[name]
    attn = layer(name)
    assert isinstance(attn, kind.layer)
    if kind.feature_map is None:
        assert not hasattr(attn, "feature_map")
    else:
        assert attn.feature_map == spread_over_heads(kind.feature_map, 4)
    assert hasattr(attn, "clamp") == kind.clamp
    assert kind.inplace_step <= kind.recurrent  # an in-place step is a recurrent form
    for backend in kind.backends:
        make_attention(name, 32, 4, backend=backend)
    x = torch.randn(2, 32)
    if kind.recurrent:
        assert attn.step(x, None)[0].shape == x.shape
    else:
        with pytest.raises(NotImplementedError):
            attn.step(x, None)
    if not kind.clamp:
        with pytest.raises(ValueError, match="has no clamp"):
            make_attention(name, 32, 4, clamp=20.0)


def test_flow_kinds_differ_by_their_feature_map_only():
    """Same weights, different feature maps: different outputs from the same parameters."""
    sigmoid, relu = layer("flow"), layer("flow-relu")
    relu.load_state_dict(sigmoid.state_dict())
    x = torch.randn(2, 20, 32)
    assert not torch.allclose(sigmoid(x), relu(x), atol=1e-4)


def test_the_ops_default_feature_map_is_the_default_kinds():
    """One place holds the op's defaults; its feature map is the default kind's, and a
    layer built without a map gives what the op gives with none."""
    assert FlowOptions().feature_map == ATTENTION_KINDS[DEFAULT_ATTENTION].feature_map
    torch.manual_seed(0)
    attn = FlowAttention(32, 4)
    x = torch.randn(2, 9, 32)
    q, k, v = attn._heads(x)
    torch.testing.assert_close(attn(x), attn._out(flow_attention(q, k, v)))
    assert attn.feature_map == FlowOptions().feature_map


def test_maps_spread_over_the_heads_in_order():
    assert spread_over_heads("relu", 3) == "relu"
    assert spread_over_heads(("relu", "sigmoid"), 1) == ("relu",)
    assert spread_over_heads(("relu", "sigmoid"), 3) == ("relu", "relu", "sigmoid")
    assert spread_over_heads(("relu", "sigmoid"), 4) == ("relu", "relu", "sigmoid", "sigmoid")


def test_mixed_heads_equal_each_map_on_its_own_heads():
    """A layer with heads of both maps gives, head by head, what a layer of one map gives
    with the same weights: the maps do not leak across heads."""
    mixed = layer("flow-mixed")
    x = torch.randn(2, 20, 32)
    q, k, v = mixed._heads(x)
    heads = []
    for h, name in enumerate(mixed.feature_map):
        one = (t[:, :, h : h + 1] for t in (q, k, v))
        heads.append(flow_attention(*one, feature_map=name))
    torch.testing.assert_close(mixed(x), mixed._out(torch.cat(heads, 2)), rtol=1e-5, atol=1e-6)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="attention='linear'"):
        make_attention("linear", 32, 4)
    with pytest.raises(ValueError, match="divisible"):
        FlowAttention(30, 4)
    with pytest.raises(ValueError, match="feature_map='tanh'"):
        FlowAttention(32, 4, feature_map="tanh")
    with pytest.raises(ValueError, match="names 3 maps for 4 heads"):
        flow_attention(*torch.randn(3, 1, 5, 4, 8), feature_map=("relu",) * 3)
    with pytest.raises(ValueError, match="divisible"):
        SoftmaxAttention(30, 4)
