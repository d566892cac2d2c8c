"""Chunked causal Flow-Attention in pure PyTorch: O(L*(d+m)) memory, no Python loop.

The gates are prefix sums over d-vectors (`gates.py`). The output's sum
sum_{s<=t} <Q_t, K_s> C_s v_s is causal linear attention, evaluated in chunks of C
tokens: inside a chunk with the masked C x C matrix Q K^T, across chunks through the
d x m state S carried in fp32 (an exclusive scan over the chunks' K^T V sums).
Autograd differentiates it directly; every saved tensor is O(L*(d+m+C)) or O(L*d*m/C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.ops.flow_attention.gates import features, final_state, flow_gates
from flowrl.ops.flow_attention.state import FlowAttentionState

DEFAULT_CHUNK_SIZE = 64


def chunk_flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
    initial_state: FlowAttentionState | None = None,
    lengths: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    feature_map: str | Sequence[str] = "sigmoid",
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, L, d), v (B, H, L, m); returns out (B, H, L, m) and the final state."""
    B, H, L, _ = q.shape
    Q, K, V, valid = features(q, k, v, lengths, feature_map)
    gates = flow_gates(Q, K, eps=eps, clamp=clamp, state=initial_state, valid=valid)

    C = min(chunk_size, L)
    n = -(-L // C)

    def chunks(x: Tensor) -> Tensor:
        """(B, H, L, *) -> (B*H*n, C, *) contiguous, zero-padded: zeros add to no sum.

        Flat 3-D batches let `bmm` read transposed operands in place, so autograd saves
        no extra copies of them."""
        x = x.contiguous()
        if n * C != L:
            x = F.pad(x, (0, 0, 0, n * C - L))
        return x.view(B * H * n, C, x.shape[-1])

    Qc = chunks(Q * gates.scale.unsqueeze(-1))  # the per-token output scale, applied first
    Kc = chunks(K)
    Vc = chunks(gates.competition.unsqueeze(-1) * V)
    d, m = Kc.shape[-1], Vc.shape[-1]
    kv_chunk = torch.bmm(Kc.transpose(1, 2), Vc).view(B, H, n, d, m)
    # S before each chunk: an exclusive prefix sum over chunks, carried in fp32
    kv_before = torch.cat([torch.zeros_like(kv_chunk[:, :, :1]), kv_chunk[:, :, :-1]], 2).cumsum(2)
    if initial_state is not None:
        kv_before = kv_before + initial_state.kv.unsqueeze(2)
    scores = torch.bmm(Qc, Kc.transpose(1, 2)).tril()
    out = torch.bmm(scores, Vc) + torch.bmm(Qc, kv_before.view(B * H * n, d, m))
    out = out.view(B, H, n * C, -1)[:, :, :L]

    if lengths is None:
        lengths = torch.full((B,), L, device=q.device)
    kv_final = kv_before[:, :, -1] + kv_chunk[:, :, -1]
    return out.to(q.dtype), final_state(gates, kv_final, initial_state, lengths)
