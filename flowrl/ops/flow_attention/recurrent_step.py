"""One token of causal Flow-Attention from the recurrent state: O(d*m) per token.

The spec's recurrent form written out for a single token (docs/flow-attention.md,
Recurrent form), independent of the parallel prefix-sum code: a policy acts with it at
constant cost per step, and the tests hold it against the parallel backends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.feature_maps import apply_by_heads
from flowrl.ops.flow_attention.gates import compute_dtype
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowOptions
from flowrl.ops.flow_attention.state import FlowAttentionState


def recurrent_flow_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: FlowAttentionState | None,
    options: FlowOptions = DEFAULTS,
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, d), v (B, H, m) of one token; returns out (B, H, m) and the new state."""
    eps, clamp = options.eps, options.clamp
    dtype = compute_dtype(q.dtype)
    B, H, d = q.shape
    if state is None:
        state = FlowAttentionState.zeros(B, H, d, v.shape[-1], device=q.device, dtype=dtype)
    Q, K = (apply_by_heads(x.to(dtype), options.feature_map, 1) for x in (q, k))
    V = v.to(dtype)
    t = (state.position + 1).to(dtype).view(B, 1)  # this token's 1-based position
    Q_eps, K_eps = Q + eps, K + eps

    def dot(a_eps: Tensor, b: Tensor) -> Tensor:
        return (a_eps * (b + eps)).sum(-1)

    key_sum = state.key_sum + K
    query_sum = state.query_sum + Q
    inflow = t / dot(Q_eps, key_sum)  # I_t, (B, H)
    outflow = t / dot(K_eps, query_sum)  # O_t
    outflow_sum = state.outflow_sum + outflow.unsqueeze(-1) * K
    inflow_sum = state.inflow_sum + inflow.unsqueeze(-1) * Q
    sink = dot(Q_eps, outflow_sum) / t  # conserved sink Ihat_t
    source = (dot(K_eps, inflow_sum) / t).clamp(-clamp, clamp)  # conserved source Ohat_t
    source_exp = source.exp()
    competition_sum = state.competition_sum + source_exp
    competition = t * source_exp / competition_sum  # C_t
    kv = state.kv + K.unsqueeze(-1) * (competition.unsqueeze(-1) * V).unsqueeze(-2)
    read = (Q.unsqueeze(-2) @ kv).squeeze(-2)  # Q_t^T S, (B, H, m)
    out = (torch.sigmoid(sink) * inflow / t).unsqueeze(-1) * read
    new_state = FlowAttentionState(
        key_sum, query_sum, outflow_sum, inflow_sum, competition_sum, kv, state.position + 1
    )
    return out.to(q.dtype), new_state
