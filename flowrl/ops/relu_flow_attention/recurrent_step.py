"""One token of the ReLU-feature variant from its recurrent state: Flow-Attention's
recurrent step (`recurrent_flow_step`) with phi = relu, O(d*m) per token."""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.recurrent_step import recurrent_flow_step
from flowrl.ops.flow_attention.state import FlowAttentionState


def relu_flow_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: FlowAttentionState | None,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, d), v (B, H, m) of one token; returns out (B, H, m) and the new state."""
    return recurrent_flow_step(q, k, v, state, eps=eps, clamp=clamp, phi=torch.relu)
