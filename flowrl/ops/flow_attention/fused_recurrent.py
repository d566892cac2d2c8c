"""One token of causal Flow-Attention from the recurrent state: O(d*m) per token."""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.gates import compute_dtype, final_state, flow_gates
from flowrl.ops.flow_attention.state import FlowAttentionState


def recurrent_flow_step(
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
    Q = torch.sigmoid(q.to(dtype)).unsqueeze(-2)  # (B, H, 1, d)
    K = torch.sigmoid(k.to(dtype)).unsqueeze(-2)
    gates = flow_gates(Q, K, eps=eps, clamp=clamp, state=state)
    weighted_v = gates.competition[..., 0, None] * v.to(dtype)  # (B, H, m)
    kv = state.kv + K.transpose(-1, -2) * weighted_v.unsqueeze(-2)
    out = (Q @ kv).squeeze(-2) * gates.scale
    new_state = final_state(gates, kv, state, torch.ones_like(state.position))
    return out.to(q.dtype), new_state
