"""One token of the sink-competition variant from its recurrent state: O(d*m) per token.

The state is a `FlowAttentionState` whose `kv` holds sum_s K_s (exp(Ohat_s) v_s)^T (the
competition's numerators, not yet divided by Z) and `competition_sum` holds Z_t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.gates import compute_dtype
from flowrl.ops.flow_attention.state import FlowAttentionState


def sink_flow_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: FlowAttentionState | None,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, d), v (B, H, m) of one token; returns out (B, H, m) and the new state."""
    dtype = compute_dtype(q.dtype)
    B, H, d = q.shape
    if state is None:
        state = FlowAttentionState.zeros(B, H, d, v.shape[-1], device=q.device, dtype=dtype)
    Q, K, V = torch.sigmoid(q.to(dtype)), torch.sigmoid(k.to(dtype)), v.to(dtype)
    t = (state.position + 1).to(dtype).view(B, 1)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return ((a + eps) * (b + eps)).sum(-1)

    key_sum, query_sum = state.key_sum + K, state.query_sum + Q
    inflow, outflow = t / dot(Q, key_sum), t / dot(K, query_sum)
    outflow_sum = state.outflow_sum + outflow.unsqueeze(-1) * K
    inflow_sum = state.inflow_sum + inflow.unsqueeze(-1) * Q
    sink = dot(Q, outflow_sum) / t
    weight = (dot(K, inflow_sum) / t).clamp(-clamp, clamp).exp()
    competition_sum = state.competition_sum + weight
    kv = state.kv + K.unsqueeze(-1) * (weight.unsqueeze(-1) * V).unsqueeze(-2)
    read = (Q.unsqueeze(-2) @ kv).squeeze(-2)
    out = (torch.sigmoid(sink) * inflow / competition_sum).unsqueeze(-1) * read
    new_state = FlowAttentionState(
        key_sum=key_sum,
        query_sum=query_sum,
        outflow_sum=outflow_sum,
        inflow_sum=inflow_sum,
        competition_sum=competition_sum,
        kv=kv,
        position=state.position + 1,
    )
    return out.to(q.dtype), new_state
