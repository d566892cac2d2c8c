"""ReLU features where they can break: a feature vector can be exactly 0, so the normalisers
<Q_t + eps, Kc_t + eps> fall to O(eps) and the flows I_t, O_t grow to O(1 / eps).

Every path (naive, chunked, parallel in one block and in blocks, recurrent step, in-place
step) is held to the float64 reference on inputs built to hit those cases, outputs and
gradients, and must stay finite. The Triton kernel's cases are in tests/ops/test_triton.py.
"""

from __future__ import annotations

import pytest
import torch

from flowrl.ops import flow_attention, flow_attention_step
from flowrl.ops.flow_attention import FlowOptions
from flowrl.ops.flow_attention.inplace_step import InplaceFlowStep
from flowrl.ops.flow_attention.parallel import parallel_flow_attention
from flowrl.ops.flow_attention.protocol import FlowBatch
from tests.ops.flow_reference import _reference_gates, reference_flow_attention, relative_error

RELU = {"feature_map": "relu"}


def parallel_blocks(q, k, v):
    batch = FlowBatch(*(x.transpose(1, 2) for x in (q, k, v)))
    out, _ = parallel_flow_attention(batch, FlowOptions("relu"), block_size=16)
    return out.transpose(1, 2)


def recurrent(q, k, v):
    state, outs = None, []
    for t in range(q.shape[1]):
        out, state = flow_attention_step(q[:, t], k[:, t], v[:, t], state, **RELU)
        outs.append(out)
    return torch.stack(outs, 1)


PATHS = {
    "naive": lambda q, k, v: flow_attention(q, k, v, backend="naive", **RELU),
    "chunked": lambda q, k, v: flow_attention(q, k, v, backend="chunked", **RELU),
    "parallel": lambda q, k, v: flow_attention(q, k, v, backend="parallel", **RELU),
    "parallel-blocks": parallel_blocks,
    "recurrent": recurrent,
}


def inplace(q, k, v):
    B, L, H, d = q.shape
    step, outs = InplaceFlowStep(B, H, d, dtype=q.dtype, **RELU), []
    for t in range(L):
        qkv = torch.stack((q[:, t], k[:, t], v[:, t]), 1).reshape(B, 3 * H * d)
        outs.append(step.step(qkv, torch.full((B,), t + 1.0)).view(B, H, d).clone())
    return torch.stack(outs, 1)


def assert_every_path_matches_reference(q, k, v, tol=1e-4):
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    ref = reference_flow_attention(*leaves, **RELU)
    dout = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=ref.dtype)
    ref_grads = torch.autograd.grad(ref, leaves, dout)
    for name, path in PATHS.items():
        xs = [x.detach().float().requires_grad_() for x in (q, k, v)]
        out = path(*xs)
        grads = torch.autograd.grad(out, xs, dout.float())
        assert relative_error(out, ref) < tol, f"{name}: {relative_error(out, ref):.2e}"
        for g, rg, x in zip(grads, ref_grads, "qkv", strict=True):
            assert relative_error(g, rg) < tol, f"{name} d{x}: {relative_error(g, rg):.2e}"
    out = inplace(*(x.detach().float() for x in (q, k, v)))
    assert relative_error(out, ref) < tol, f"inplace: {relative_error(out, ref):.2e}"


def silent_inputs(n: int, seed: int = 11) -> tuple[torch.Tensor, ...]:
    """A random 10-token prefix, then n tokens whose keys are < 0 in every entry (random
    queries, large values), then one query token whose key is < 0 too."""
    g = torch.Generator().manual_seed(seed)
    d = 4
    q, k, v = (torch.randn(1, 11, 1, d, generator=g) for _ in range(3))
    silent_q = torch.randn(1, n, 1, d, generator=g)
    silent_k = -torch.rand(1, n, 1, d, generator=g) - 0.1
    q = torch.cat([q[:, :10], silent_q, q[:, 10:]], 1)
    k = torch.cat([k[:, :10], silent_k, -k[:, 10:].abs() - 0.1], 1)
    v = torch.cat([v[:, :10], torch.full((1, n, 1, d), 100.0), v[:, 10:]], 1)
    return q.double(), k.double(), v.double()


def test_hundreds_of_silent_keys_match_the_reference_on_every_path():
    assert_every_path_matches_reference(*silent_inputs(500))


def test_silent_keys_drop_out_of_later_outputs_but_for_the_allocation():
    """A key <= 0 in every entry gives K = 0: such tokens, however many, add nothing to a
    later output except through the position t in its allocation A_t = sigmoid(Ihat_t).
    With sigmoid features the same tokens dilute the output."""

    def last(feature_map: str, n: int) -> tuple[float, float]:
        q, k, v = silent_inputs(n)
        out = reference_flow_attention(q, k, v, feature_map=feature_map)[0, -1, 0, 0].item()
        qh, kh = (x.transpose(1, 2) for x in (q, k))
        allocation = _reference_gates(qh, kh, 1e-6, 10.0, feature_map)[5]
        return out, allocation[0, 0, -1].item()

    out_0, a_0 = last("relu", 0)
    out_500, a_500 = last("relu", 500)
    assert flow_attention(*(x.float() for x in silent_inputs(500)), **RELU)[
        0, -1, 0, 0
    ].item() == pytest.approx(out_500, rel=1e-5)
    assert a_500 != pytest.approx(a_0, rel=1e-3)  # the allocation does move with t
    assert out_500 / a_500 == pytest.approx(out_0 / a_0, rel=1e-9)
    sig_0, sig_a_0 = last("sigmoid", 0)
    sig_500, sig_a_500 = last("sigmoid", 500)
    assert abs(sig_500 / sig_a_500 - sig_0 / sig_a_0) > 0.1 * abs(sig_0 / sig_a_0)


def test_query_rows_at_zero_give_zero_output_and_finite_gradients():
    """Queries <= 0 in every entry at some tokens: those outputs are exactly 0 (Q_t = 0),
    I_t is O(1 / eps), and every path still matches the reference."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 80, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
    silent = torch.zeros(80, dtype=torch.bool)
    silent[[0, 1, 17, 40, 41, 42, 79]] = True
    q[:, silent] = -q[:, silent].abs() - 0.05
    assert_every_path_matches_reference(q, k, v)
    out = flow_attention(q.float(), k.float(), v.float(), **RELU)
    assert (out[:, silent] == 0).all()


def test_a_first_token_at_zero_then_ordinary_tokens():
    """q_1 and k_1 <= 0: the first token's normalisers are d eps^2 and eps sums; everything
    after it must be as if the sequence started with a silent token."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 40, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
    q[:, 0], k[:, 0] = -q[:, 0].abs(), -k[:, 0].abs()
    assert_every_path_matches_reference(q, k, v)


def test_every_feature_zero_stays_finite():
    """All queries and keys <= 0: every output is 0 and every gradient finite (and 0)."""
    q = -torch.rand(1, 50, 2, 8, dtype=torch.float32).requires_grad_()
    k = -torch.rand(1, 50, 2, 8, dtype=torch.float32).requires_grad_()
    v = torch.randn(1, 50, 2, 8, requires_grad=True)
    for name, path in PATHS.items():
        out = path(q, k, v)
        grads = torch.autograd.grad(out.square().sum() + out.sum(), (q, k, v))
        assert (out == 0).all(), name
        assert all(torch.isfinite(x).all() and (x == 0).all() for x in grads), name
