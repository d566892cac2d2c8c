"""Chunked causal Flow-Attention in pure PyTorch: O(L*(d+m)) memory, no Python loop.

The gates are prefix sums over d-vectors (`gates.py`). The output's sum
sum_{s<=t} <Q_t, K_s> C_s v_s is causal linear attention, evaluated in chunks of C
tokens: inside a chunk with the masked C x C matrix Q K^T, across chunks through the
d x m state S carried in fp32 (an exclusive scan over the chunks' K^T V sums).
Autograd differentiates it directly; every saved tensor is O(L*(d+m+C)) or O(L*d*m/C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.ops.flow_attention.gates import features, final_state, sequence_gates
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowBatch, FlowOptions
from flowrl.ops.flow_attention.state import FlowAttentionState

DEFAULT_CHUNK_SIZE = 64


def chunked_flow_attention(
    batch: FlowBatch,
    options: FlowOptions = DEFAULTS,
    return_state: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Tensor, FlowAttentionState | None]:
    """The backend protocol (`protocol.py`) in chunks of `chunk_size` tokens."""
    q, state = batch.q, batch.initial_state
    B, H, L, _ = q.shape
    Q, K, V, valid = features(q, batch.k, batch.v, batch.lengths, options.feature_map)
    gates = sequence_gates(Q, K, options, state, valid)

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
    if state is not None:
        kv_before = kv_before + state.kv.unsqueeze(2)
    scores = torch.bmm(Qc, Kc.transpose(1, 2)).tril()
    out = torch.bmm(scores, Vc) + torch.bmm(Qc, kv_before.view(B * H * n, d, m))
    out = out.view(B, H, n * C, -1)[:, :, :L].to(q.dtype)
    if not return_state:
        return out, None
    kv_final = kv_before[:, :, -1] + kv_chunk[:, :, -1]
    return out, final_state(gates, kv_final, state, batch.lengths)
