"""flow_attention_gates: the readings agree with the op's own output, and the layer hook
reads the layer's projections."""

from __future__ import annotations

import pytest
import torch

from flowrl.nn import FlowAttention
from flowrl.ops.flow_attention import flow_attention, flow_attention_gates


@pytest.mark.parametrize("feature_map", ["sigmoid", "relu"])
def test_weights_rebuild_the_output_up_to_a_positive_scale(feature_map):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 9, 3, 4, dtype=torch.float64) for _ in range(3))
    out = flow_attention(q, k, v, backend="naive", feature_map=feature_map)  # (B, L, H, m)
    readings = flow_attention_gates(q, k, feature_map=feature_map)
    for t in (0, 4, 8):
        weights = readings.attention_weights(t)  # (B, H, t + 1)
        assert weights.shape == (2, 3, t + 1)
        mixed = torch.einsum("bhs,bshm->bhm", weights, v[:, : t + 1])
        y = out[:, t]  # = (the gate A_t I_t / t >= 0) * mixed, per head
        assert (torch.einsum("bhm,bhm->bh", y, mixed) >= 0).all()
        outer = y.unsqueeze(-1) * mixed.unsqueeze(-2)  # proportional: a symmetric matrix
        torch.testing.assert_close(outer, outer.transpose(-1, -2))
        assert mixed.abs().sum() > 0


def test_readings_shapes_and_the_normaliser():
    q, k = torch.randn(1, 5, 2, 4), torch.randn(1, 5, 2, 4)
    r = flow_attention_gates(q, k, feature_map="relu", clamp=3.0)
    assert r.query_features.shape == r.key_features.shape == (1, 2, 5, 4)
    assert (r.key_features >= 0).all()
    assert r.source_exp.log().abs().max() <= 3.0 + 1e-6
    torch.testing.assert_close(r.competition_sums, r.source_exp.cumsum(-1))


def test_layer_gates_read_the_layers_projections():
    torch.manual_seed(0)
    layer = FlowAttention(8, 2, feature_map="relu", clamp=4.0)
    x = torch.randn(1, 6, 8)
    q, k, _ = layer.qkv(x).unflatten(-1, (3, 2, 4)).unbind(-3)
    expected = flow_attention_gates(q.double(), k.double(), feature_map="relu", clamp=4.0)
    got = layer.gates(x)
    assert got.competition.dtype == torch.float64
    torch.testing.assert_close(got.competition, expected.competition)
    torch.testing.assert_close(got.key_features, expected.key_features)


def test_closed_keys_sources_climb_with_the_position_at_a_rate_set_by_eps():
    # one open key, the first; every later key closed (ReLU features all 0). The inflow of a
    # later token is t / <Q_t + eps, K_1 + eps>, which grows with t, so the closed tokens'
    # sources eps <1, Sq_t> / t grow as eps t: eps sets the length at which they climb.
    L, d = 4000, 4
    q = torch.rand(1, L, 1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    k = torch.full((1, L, 1, d), -1.0, dtype=torch.float64)
    k[:, 0] = 1.0
    sources = {}
    for eps in (1e-6, 1e-9):
        readings = flow_attention_gates(q, k, feature_map="relu", eps=eps, clamp=2.0)
        sources[eps] = readings.source_exp[0, 0].log()  # Ohat_t, (L,)
    late, early = sources[1e-6][-1], sources[1e-6][L // 2 - 1]
    assert 0 < late < 2 and late / early == pytest.approx(2.0, rel=0.02)  # linear in t
    assert sources[1e-6][-1] / sources[1e-9][-1] == pytest.approx(1000.0, rel=0.02)
