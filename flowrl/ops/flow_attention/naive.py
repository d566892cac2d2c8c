"""Reference causal Flow-Attention, written as the formulas read.

Like the paper's code, it forms the L x d x m tensor of cumulated outer products
sum_{s<=t} K_s (C_s v_s)^T, so it costs O(L*d*m) memory: the baseline to beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowrl.ops.flow_attention.gates import features, final_state, flow_gates
from flowrl.ops.flow_attention.state import FlowAttentionState


def naive_flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
    initial_state: FlowAttentionState | None = None,
    lengths: Tensor | None = None,
    feature_map: str | Sequence[str] = "sigmoid",
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, L, d), v (B, H, L, m); returns out (B, H, L, m) and the final state."""
    Q, K, V, valid = features(q, k, v, lengths, feature_map)
    gates = flow_gates(Q, K, eps=eps, clamp=clamp, state=initial_state, valid=valid)
    weighted_v = gates.competition.unsqueeze(-1) * V
    kv = torch.einsum("bhld,bhlm->bhldm", K, weighted_v).cumsum(2)
    if initial_state is not None:
        kv = kv + initial_state.kv.unsqueeze(2)
    out = torch.einsum("bhld,bhldm->bhlm", Q, kv) * gates.scale.unsqueeze(-1)
    if lengths is None:
        lengths = torch.full((q.shape[0],), q.shape[2], device=q.device)
    return out.to(q.dtype), final_state(gates, kv[:, :, -1], initial_state, lengths)
