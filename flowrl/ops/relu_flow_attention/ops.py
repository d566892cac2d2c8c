"""The ReLU-feature variant: Flow-Attention's flows, competition, allocation and output with
phi = relu in place of the sigmoid, on the library's parallel backend (any length, blocks
beyond a few head dims) and its recurrent step.

A token whose key projection is <= 0 in every entry has K = 0 exactly, so it adds nothing
to the key sum, the outflow sum or the value state: later outputs read it as if it were not
there, apart from the position t that scales the allocation. Sigmoid features are never 0,
so under Flow-Attention every token of a long sequence takes some share of the normaliser.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.api import parallel_by_length
from flowrl.ops.flow_attention.recurrent_step import recurrent_flow_step
from flowrl.ops.flow_attention.state import FlowAttentionState


def relu_flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6, clamp: float = 10.0
) -> Tensor:
    """q, k (B, L, H, d), v (B, L, H, m) -> out (B, L, H, m); each row one sequence from its
    first token (right padding is harmless: causal)."""
    qb, kb, vb = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, *)
    out, _ = parallel_by_length(
        qb, kb, vb, eps=eps, clamp=clamp, return_state=False, phi=torch.relu
    )
    return out.transpose(1, 2)


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
