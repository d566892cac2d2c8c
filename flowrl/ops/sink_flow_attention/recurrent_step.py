"""One token of the sink-competition variant from its recurrent state: O(d*m) per token.

The state is a `FlowAttentionState` whose `kv` holds sum_s K_s (exp(Ohat_s) v_s)^T (the
competition's numerators, not yet divided by Z) and `competition_sum` holds Z_t; the gates
are Flow-Attention's (`token_gates`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.recurrent_step import token_gates
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
    g = token_gates(q, k, v, state, eps=eps, clamp=clamp)
    kv = g.state.kv + g.K.unsqueeze(-1) * (g.source_exp.unsqueeze(-1) * g.V).unsqueeze(-2)
    read = (g.Q.unsqueeze(-2) @ kv).squeeze(-2)
    # A_t (I_t / t) (t / Z_t) = A_t I_t / Z_t
    out = (torch.sigmoid(g.sink) * g.inflow / g.state.competition_sum).unsqueeze(-1) * read
    g.state.kv = kv
    return out.to(q.dtype), g.state
