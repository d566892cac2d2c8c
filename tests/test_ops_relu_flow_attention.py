"""The ReLU-feature Flow-Attention variant against its float64 reference."""

from __future__ import annotations

import pytest
import torch

from flowrl.ops.relu_flow_attention import relu_flow_attention, relu_flow_attention_step
from tests.flow_reference import (
    _reference_gates,
    random_qkv,
    reference_flow_attention,
    relative_error,
)


@pytest.mark.parametrize("L", [1, 2, 17, 64, 150])  # 150 > 2.5 x d: the blocked path
@pytest.mark.parametrize("scale", [1.0, 4.0])  # 4: large features, the clamp is active
def test_parallel_matches_the_reference_with_gradients(L, scale):
    q, k, v = random_qkv(2, L, 3, 8, 5, seed=L, scale=scale)
    out = relu_flow_attention(q, k, v)
    ref = reference_flow_attention(q, k, v, features="relu")
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
    assert torch.autograd.gradcheck(lambda *x: relu_flow_attention(*x), (q, k, v))


def test_recurrent_steps_match_the_reference_at_every_token():
    q, k, v = random_qkv(2, 40, 2, 8, 4, seed=5, scale=2.0)
    ref = reference_flow_attention(q, k, v, features="relu")
    state, outs = None, []
    for t in range(q.shape[1]):
        y, state = relu_flow_attention_step(q[:, t], k[:, t], v[:, t], state)
        outs.append(y)
    assert relative_error(torch.stack(outs, 1), ref) < 1e-5
    assert state.position.tolist() == [40, 40]


def test_causal_and_different_from_flow_attention():
    q, k, v = random_qkv(1, 30, 1, 8, 4, seed=7, scale=2.0)
    out = relu_flow_attention(q, k, v).detach()
    k2 = k.detach().clone()
    k2[:, 20:] += 1.0
    out2 = relu_flow_attention(q, k2, v)
    torch.testing.assert_close(out2[:, :20], out[:, :20])
    assert relative_error(out, reference_flow_attention(q, k, v)) > 1e-2  # another function


def silent_inputs(n: int) -> tuple[torch.Tensor, ...]:
    """A random 10-token prefix, then n tokens whose keys are negative in every entry (with
    random queries and large values), then one query token with a negative key."""
    g = torch.Generator().manual_seed(11)
    d = 4
    q, k, v = (torch.randn(1, 11, 1, n, generator=g) for n in (d, d, 2))  # prefix + query
    silent_q = torch.randn(1, n, 1, d, generator=g)
    silent_k = -torch.rand(1, n, 1, d, generator=g) - 0.1
    q = torch.cat([q[:, :10], silent_q, q[:, 10:]], 1)
    k = torch.cat([k[:, :10], silent_k, -k[:, 10:].abs() - 0.1], 1)
    v = torch.cat([v[:, :10], torch.full((1, n, 1, 2), 100.0), v[:, 10:]], 1)
    return q, k, v


def last_output(features: str, n: int) -> tuple[float, float]:
    """The float64 reference's output at the last token (value dim 0) and its allocation."""
    q, k, v = silent_inputs(n)
    out = reference_flow_attention(q, k, v, features=features)[0, -1, 0, 0].item()
    qh, kh = (x.double().transpose(1, 2) for x in (q, k))
    gates = _reference_gates(qh, kh, 1e-6, 10.0, features)
    return out, gates[5][0, 0, -1].item()


def test_keys_at_zero_drop_out_of_later_outputs_but_for_the_allocation():
    """A key projection <= 0 gives K = 0: such tokens, however many, add nothing to a later
    output except through the position t in its allocation A_t = sigmoid(Ihat_t). With the
    specification's sigmoid features the same tokens dilute the output."""
    out_0, a_0 = last_output("relu", 0)
    out_500, a_500 = last_output("relu", 500)
    assert relu_flow_attention(*silent_inputs(500))[0, -1, 0, 0].item() == pytest.approx(
        out_500, rel=1e-5
    )
    assert a_500 != pytest.approx(a_0, rel=1e-3)  # the allocation does move with t
    assert out_500 / a_500 == pytest.approx(out_0 / a_0, rel=1e-9)
    sig_0, sig_a_0 = last_output("sigmoid", 0)
    sig_500, sig_a_500 = last_output("sigmoid", 500)
    assert abs(sig_500 / sig_a_500 - sig_0 / sig_a_0) > 0.1 * abs(sig_0 / sig_a_0)
