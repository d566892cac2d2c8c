"""Reference causal Flow-Attention, written as the formulas read.

Like the paper's code, it forms the L x d x m tensor of cumulated outer products
sum_{s<=t} K_s (C_s v_s)^T, so it costs O(L*d*m) memory: the baseline to beat.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.gates import features, final_state, sequence_gates
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowBatch, FlowOptions
from flowrl.ops.flow_attention.state import FlowAttentionState


def naive_flow_attention(
    batch: FlowBatch, options: FlowOptions = DEFAULTS, return_state: bool = True
) -> tuple[Tensor, FlowAttentionState | None]:
    """The backend protocol (`protocol.py`): out (B, H, L, m) and the final state."""
    x, state = batch, batch.initial_state
    Q, K, V, valid = features(x.q, x.k, x.v, x.lengths, options.feature_map)
    gates = sequence_gates(Q, K, options, state, valid)
    weighted_v = gates.competition.unsqueeze(-1) * V
    kv = torch.einsum("bhld,bhlm->bhldm", K, weighted_v).cumsum(2)
    if state is not None:
        kv = kv + state.kv.unsqueeze(2)
    out = (torch.einsum("bhld,bhldm->bhlm", Q, kv) * gates.scale.unsqueeze(-1)).to(x.q.dtype)
    return out, final_state(gates, kv[:, :, -1], state, x.lengths) if return_state else None
