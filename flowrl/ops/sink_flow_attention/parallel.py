"""The sink-competition variant over whole sequences: Flow-Attention's gates (`flow_gates`)
and the masked L x L score matrix for the output, differentiated by autograd.

It costs O(L^2) memory per head, like masked softmax attention, which suits the sequences
it is meant for here (T-Maze episodes of a few hundred tokens); acting uses the O(d*m)
recurrent step.
"""

from __future__ import annotations

from torch import Tensor

from flowrl.ops.flow_attention.gates import feature_map, flow_gates, positions


def sink_flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6, clamp: float = 10.0
) -> Tensor:
    """q, k (B, L, H, d), v (B, L, H, m) -> out (B, L, H, m); each row one sequence from its
    first token (right padding is harmless: causal). The gates are Flow-Attention's."""
    Q, K, V, _ = feature_map(*(x.transpose(1, 2) for x in (q, k, v)), None)  # (B, H, L, *)
    gates = flow_gates(Q, K, eps=eps, clamp=clamp)
    t = positions(Q.shape[-2], None, Q)
    scores = (Q @ K.transpose(-1, -2)).tril()  # <Q_t, K_s> for s <= t
    # the competition t exp(Ohat_s) / Z_t is read at the sink t:
    # out_t = A_t (I_t / t) (t / Z_t) sum_s <Q_t, K_s> exp(Ohat_s) v_s
    scale = gates.scale * t / gates.competition_sums
    out = scale.unsqueeze(-1) * (scores @ (gates.source_exp.unsqueeze(-1) * V))
    return out.transpose(1, 2).to(q.dtype)
