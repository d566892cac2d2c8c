"""The sink-competition Flow-Attention variant against its float64 reference."""

from __future__ import annotations

import pytest
import torch

from flowrl.ops.sink_flow_attention import sink_flow_attention, sink_flow_attention_step
from tests.flow_reference import (
    random_qkv,
    reference_flow_attention,
    reference_sink_flow_attention,
    relative_error,
)


@pytest.mark.parametrize("L", [1, 2, 17, 64, 150])
@pytest.mark.parametrize("scale", [1.0, 4.0])  # 4: large features, the clamp is active
def test_parallel_matches_the_reference_with_gradients(L, scale):
    q, k, v = random_qkv(2, L, 3, 8, 5, seed=L, scale=scale)
    out = sink_flow_attention(q, k, v)
    ref = reference_sink_flow_attention(q, k, v)
    assert relative_error(out, ref) < 1e-5
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad.double())
    # at L = 1 the q and k gradients are O(eps) (the output is A_1 v_1 up to eps), so an fp32
    # relative check is meaningless there: gradcheck covers them in float64
    for g, w in list(zip(got, want, strict=True))[2 if L == 1 else 0 :]:
        assert relative_error(g, w) < 1e-4


def test_gradcheck_float64():
    q, k, v = random_qkv(1, 6, 2, 3, 2, dtype=torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda *x: sink_flow_attention(*x), (q, k, v))


def test_recurrent_steps_match_the_reference_at_every_token():
    q, k, v = random_qkv(2, 40, 2, 8, 4, seed=5, scale=2.0)
    ref = reference_sink_flow_attention(q, k, v)
    state, outs = None, []
    for t in range(q.shape[1]):
        y, state = sink_flow_attention_step(q[:, t], k[:, t], v[:, t], state)
        outs.append(y)
    assert relative_error(torch.stack(outs, 1), ref) < 1e-5
    assert state.position.tolist() == [40, 40]


def test_causal_and_different_from_flow_attention():
    q, k, v = random_qkv(1, 30, 1, 8, 4, seed=7, scale=2.0)
    out = sink_flow_attention(q, k, v).detach()
    k2 = k.detach().clone()
    k2[:, 20:] += 1.0
    out2 = sink_flow_attention(q, k2, v)
    torch.testing.assert_close(out2[:, :20], out[:, :20])
    assert relative_error(out, reference_flow_attention(q, k, v)) > 1e-2  # another function


def test_a_winning_source_keeps_its_share_where_flow_attention_dilutes_it():
    """A weak token, one source with large key features (it wins the competition: its
    conserved outflow is far above the others'), then n weak tokens: the variant's output at
    the last token keeps that source's value as n grows; Flow-Attention's shrinks ~1/n. (The
    first token's conserved outflow is always 1, so the winner comes second, like a T-Maze
    cue after the first return-to-go token.)"""
    d, m = 4, 1

    def outputs(n: int) -> tuple[float, float]:
        q = torch.full((1, n + 2, 1, d), -4.0)  # small query features everywhere
        k = torch.full((1, n + 2, 1, d), -4.0)
        k[:, 1] = 6.0  # key features ~1 against ~0.02: this source wins the competition
        v = torch.zeros(1, n + 2, 1, m)
        v[:, 1] = 1.0  # only the winner carries a value
        sink = sink_flow_attention(q, k, v)[0, -1, 0, 0].item()
        flow = reference_flow_attention(q, k, v)[0, -1, 0, 0].item()
        return sink, flow

    (sink_10, flow_10), (sink_1000, flow_1000) = outputs(10), outputs(1000)
    assert flow_1000 < 0.1 * flow_10  # diluted with the length
    assert sink_1000 > 0.5 * sink_10 > 0
