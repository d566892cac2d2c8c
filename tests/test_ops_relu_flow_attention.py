"""What sets the ReLU-feature variant apart (the shared checks against its float64 reference:
tests/test_ops_flow_variants.py)."""

from __future__ import annotations

import pytest
import torch

from flowrl.ops.relu_flow_attention import relu_flow_attention
from tests.flow_reference import _reference_gates, reference_flow_attention


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
