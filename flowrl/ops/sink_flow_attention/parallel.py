"""The sink-competition variant over whole sequences: prefix sums for the gates and the
masked L x L score matrix for the output, differentiated by autograd.

It costs O(L^2) memory per head, like masked softmax attention, which suits the sequences
it is meant for here (T-Maze episodes of a few hundred tokens); acting uses the O(d*m)
recurrent step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.gates import compute_dtype


def sink_flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6, clamp: float = 10.0
) -> Tensor:
    """q, k (B, L, H, d), v (B, L, H, m) -> out (B, L, H, m); each row one sequence from its
    first token (right padding is harmless: causal)."""
    dtype = compute_dtype(q.dtype)
    q, k, v = (x.transpose(1, 2).to(dtype) for x in (q, k, v))  # (B, H, L, *)
    Q, K = torch.sigmoid(q), torch.sigmoid(k)
    t = torch.arange(1, q.shape[-2] + 1, device=q.device, dtype=dtype)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return ((a + eps) * (b + eps)).sum(-1)

    inflow = t / dot(Q, K.cumsum(-2))  # I_t
    outflow = t / dot(K, Q.cumsum(-2))  # O_t
    sink = dot(Q, (outflow.unsqueeze(-1) * K).cumsum(-2)) / t  # conserved sink Ihat_t
    source = (dot(K, (inflow.unsqueeze(-1) * Q).cumsum(-2)) / t).clamp(-clamp, clamp)
    weight = source.exp()  # exp(Ohat_s); the competition t exp(Ohat_s) / Z_t is read at t
    scores = (Q @ K.transpose(-1, -2)).tril()  # <Q_t, K_s> for s <= t
    scale = torch.sigmoid(sink) * inflow / weight.cumsum(-1)  # A_t (I_t / t) (t / Z_t)
    out = scale.unsqueeze(-1) * (scores @ (weight.unsqueeze(-1) * v))
    return out.transpose(1, 2).to(q.dtype)
