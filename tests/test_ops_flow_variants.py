"""The Flow-Attention variants (`flow-sink`, `flow-relu`) against their float64 references:
the parallel form with gradients, gradcheck, the recurrent step, causality. What sets each
variant apart is tested beside it (tests/test_ops_<variant>_flow_attention.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import pytest
import torch

from flowrl.ops.relu_flow_attention import relu_flow_attention, relu_flow_attention_step
from flowrl.ops.sink_flow_attention import sink_flow_attention, sink_flow_attention_step
from tests.flow_reference import (
    random_qkv,
    reference_flow_attention,
    reference_sink_flow_attention,
    relative_error,
)


class Variant(NamedTuple):
    parallel: Callable
    step: Callable
    reference: Callable


VARIANTS = {
    "flow-sink": Variant(
        sink_flow_attention, sink_flow_attention_step, reference_sink_flow_attention
    ),
    "flow-relu": Variant(
        relu_flow_attention,
        relu_flow_attention_step,
        partial(reference_flow_attention, features="relu"),
    ),
}
variants = pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))


@variants
@pytest.mark.parametrize("L", [1, 2, 17, 64, 150])  # 150 > 2.5 x d: flow-relu's blocked path
@pytest.mark.parametrize("scale", [1.0, 4.0])  # 4: large features, the clamp is active
def test_parallel_matches_the_reference_with_gradients(variant, L, scale):
    q, k, v = random_qkv(2, L, 3, 8, 5, seed=L, scale=scale)
    out = variant.parallel(q, k, v)
    ref = variant.reference(q, k, v)
    assert relative_error(out, ref) < 1e-5
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad.double())
    # at L = 1 the q and k gradients are O(eps) (the output is A_1 v_1 up to eps), so an fp32
    # relative check is meaningless there: gradcheck covers them in float64
    for g, w in list(zip(got, want, strict=True))[2 if L == 1 else 0 :]:
        assert relative_error(g, w) < 1e-4


@variants
def test_gradcheck_float64(variant):
    q, k, v = random_qkv(1, 6, 2, 3, 2, dtype=torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda *x: variant.parallel(*x), (q, k, v))


@variants
def test_recurrent_steps_match_the_reference_at_every_token(variant):
    q, k, v = random_qkv(2, 40, 2, 8, 4, seed=5, scale=2.0)
    ref = variant.reference(q, k, v)
    state, outs = None, []
    for t in range(q.shape[1]):
        y, state = variant.step(q[:, t], k[:, t], v[:, t], state)
        outs.append(y)
    assert relative_error(torch.stack(outs, 1), ref) < 1e-5
    assert state.position.tolist() == [40, 40]


@variants
def test_causal_and_different_from_flow_attention(variant):
    q, k, v = random_qkv(1, 30, 1, 8, 4, seed=7, scale=2.0)
    out = variant.parallel(q, k, v).detach()
    k2 = k.detach().clone()
    k2[:, 20:] += 1.0
    out2 = variant.parallel(q, k2, v)
    torch.testing.assert_close(out2[:, :20], out[:, :20])
    assert relative_error(out, reference_flow_attention(q, k, v)) > 1e-2  # another function
