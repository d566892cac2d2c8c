"""The in-place recurrent step against the reference step and the float64 spec."""

from __future__ import annotations

import pytest
import torch

from flowrl.ops import flow_attention_step
from flowrl.ops.flow_attention.inplace_step import InplaceFlowStep
from tests.ops.flow_reference import (
    random_qkv,
    reference_by_heads,
    reference_flow_attention,
    relative_error,
)


def run_inplace(q, k, v, **kw):
    """Every token of q, k, v (B, L, H, d) through one InplaceFlowStep; outputs (B, L, H, d)."""
    B, L, H, d = q.shape
    step = InplaceFlowStep(B, H, d, dtype=q.dtype, **kw)
    outs = []
    for t in range(L):
        qkv = torch.stack((q[:, t], k[:, t], v[:, t]), 1).reshape(B, 3 * H * d)
        position = torch.full((B,), t + 1.0, dtype=q.dtype)
        outs.append(step.step(qkv, position).view(B, H, d).clone())
    return torch.stack(outs, 1), step


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("kw", [{}, {"eps": 1e-3, "clamp": 1.5}])
def test_inplace_step_matches_the_float64_spec(dtype, tol, kw, feature_map):
    q, k, v = (x.detach() for x in random_qkv(3, 40, 2, 8, 8, dtype=dtype, seed=5, scale=2.0))
    kw = {**kw, "feature_map": feature_map}
    out, _ = run_inplace(q, k, v, **kw)
    assert relative_error(out, reference_flow_attention(q, k, v, **kw)) < tol


def test_inplace_step_equals_the_reference_step_and_its_state(feature_map):
    q, k, v = (x.detach() for x in random_qkv(2, 25, 3, 4, 4, seed=6, scale=3.0))
    kw = {"clamp": 2.0, "feature_map": feature_map}
    out, step = run_inplace(q, k, v, **kw)
    state, ref = None, []
    for t in range(q.shape[1]):
        y, state = flow_attention_step(q[:, t], k[:, t], v[:, t], state, **kw)
        ref.append(y)
    assert relative_error(out, torch.stack(ref, 1)) < 1e-5
    mine = step.state(state.position).tensors()
    for name, tensor in state.tensors().items():
        assert relative_error(mine[name].double(), tensor.double()) < 1e-5, name


def test_reset_rows_start_over_and_leave_the_others_alone(feature_map):
    q, k, v = (x.detach() for x in random_qkv(3, 12, 1, 4, 4, dtype=torch.float64, seed=7))
    B, L, H, d = q.shape
    kw = {"feature_map": feature_map}
    step = InplaceFlowStep(B, H, d, dtype=q.dtype, **kw)
    position = torch.zeros(B, dtype=q.dtype)
    outs = []
    for t in range(L):
        if t == 5:
            rows = torch.tensor([False, True, False])
            step.reset(rows)
            position[rows] = 0.0
        position += 1.0
        qkv = torch.stack((q[:, t], k[:, t], v[:, t]), 1).reshape(B, 3 * H * d)
        outs.append(step.step(qkv, position).view(B, H, d).clone())
    out = torch.stack(outs, 1)
    whole = reference_flow_attention(q, k, v, **kw)
    assert relative_error(out[[0, 2]], whole[[0, 2]]) < 1e-10
    restarted = reference_flow_attention(q[1:2, 5:], k[1:2, 5:], v[1:2, 5:], **kw)
    assert relative_error(out[1:2, 5:], restarted) < 1e-10
    assert relative_error(out[1:2, :5], whole[1:2, :5]) < 1e-10


def test_inplace_step_with_heads_of_different_maps():
    maps = ("sigmoid", "relu", "relu")
    q, k, v = (x.detach() for x in random_qkv(2, 30, 3, 8, 8, dtype=torch.float64, seed=8))
    out, _ = run_inplace(q, k, v, feature_map=maps)
    assert relative_error(out, reference_by_heads(q, k, v, maps)) < 1e-10


def test_a_float64_state_keeps_a_long_episode_exact_where_float32_drifts():
    # a corridor: three kinds of token repeating for 6000 tokens after a distinct start
    start = torch.randn(3, 2, 3 * 2 * 8, generator=torch.Generator().manual_seed(9))
    period = torch.randn(3, 2, 3 * 2 * 8, generator=torch.Generator().manual_seed(10))
    tokens = [start[t] if t < 3 else period[t % 3] for t in range(6000)]

    def last_output(dtype: torch.dtype, state_dtype: torch.dtype) -> torch.Tensor:
        step = InplaceFlowStep(2, 2, 8, clamp=2.0, dtype=dtype, state_dtype=state_dtype)
        position = torch.zeros(2, dtype=state_dtype)
        for token in tokens:
            out = step.step(token.to(dtype), position.add_(1.0))
        assert out.dtype == dtype
        return out.double()

    # float64 state, float32 in and out: 2e-8 on seeds 9, 11, 13; a float32 state: 6e-6 to
    # 2e-5 at 6000 tokens, 4e-5 to 6e-5 at 20,000, growing with the episode
    exact = last_output(torch.float64, torch.float64)
    assert relative_error(last_output(torch.float32, torch.float64), exact) < 1e-7
    assert relative_error(last_output(torch.float32, torch.float32), exact) > 1e-6
