"""Causal Flow-Attention in masked-matmul ("parallel") form: every gate from one score matrix.

Within a block of C tokens, the block's C x C matrix P = Q K^T serves every sum the spec
takes over s <= t: its lower triangle gives <Q_t, sum_s K_s> (row sums), the sink's
sum_s O_s <Q_t, K_s> (a matrix-vector product) and the output; its upper triangle,
read down the columns, gives the source side <K_t, sum_s Q_s> and sum_s I_s <K_t, Q_s>.
The eps terms need only prefix sums of scalars. So no (L, d) prefix sum is ever formed,
and a short sequence (one block, C = L) is a handful of matmuls: the form that wins for
training windows of up to a few hundred tokens. Longer sequences chain blocks through the
d-vector sums and the d x m state carried per block, like the chunked backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.ops.flow_attention.gates import feature_map, positions
from flowrl.ops.flow_attention.state import FlowAttentionState


def _exclusive_blocks(totals: Tensor, start: Tensor | None) -> Tensor | None:
    """Sum over the blocks before each block (B, H, n, *), plus `start`; None if all zero.

    A product with the strictly lower-triangular n x n matrix of ones: one read and one
    write of `totals` forward and backward, where cat + cumsum take several (and flips).
    """
    B, H, n = totals.shape[:3]
    if n == 1:
        return None if start is None else start.unsqueeze(2)
    earlier = torch.ones(n, n, device=totals.device, dtype=totals.dtype).tril(-1)
    before = (earlier @ totals.reshape(B, H, n, -1)).view_as(totals)
    return before if start is None else before + start.unsqueeze(2)


def _dot_before(x: Tensor, before: Tensor | None) -> Tensor | float:
    """<x_t, before> for every token: x (B, H, n, C, d), before (B, H, n, d) or None."""
    if before is None:
        return 0.0
    return (x @ before.unsqueeze(-1)).squeeze(-1)


def parallel_flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
    initial_state: FlowAttentionState | None = None,
    lengths: Tensor | None = None,
    block_size: int | None = None,
    return_state: bool = True,
) -> tuple[Tensor, FlowAttentionState | None]:
    """q, k (B, H, L, d), v (B, H, L, m) -> out (B, H, L, m) and the final state.

    `block_size` None makes the whole sequence one block (cost O(L^2 * d)); the state is
    None when `return_state` is False, which skips its d x m sum.
    """
    B, H, L, d = q.shape
    C = L if block_size is None else min(block_size, L)
    n = -(-L // C)
    if lengths is None and n * C != L:
        lengths = torch.full((B,), L, device=q.device)
    Q, K, V, valid = feature_map(q, k, v, lengths)
    state = initial_state

    def blocks(x: Tensor) -> Tensor:
        """(B, H, L, *) -> (B, H, n, C, *), zero-padded at the end: pads add to no sum."""
        if n * C != L:
            x = F.pad(x, (0, 0, 0, n * C - L))
        return x.reshape(B, x.shape[1], n, C, x.shape[-1])

    Qb, Kb, Vb = blocks(Q), blocks(K), blocks(V)
    t = positions(n * C, state, Q).view(-1, 1, n, C)

    def prefix(x: Tensor) -> Tensor:
        """Prefix sum of per-token scalars (B, H, n, C) along the whole sequence."""
        return x.flatten(-2).cumsum(-1).view_as(x)

    def start(name: str) -> Tensor | None:
        return None if state is None else getattr(state, name)

    def start_total(name: str) -> Tensor | float:
        """<1, carried d-vector>: what the eps terms need of the state."""
        return 0.0 if state is None else getattr(state, name).sum(-1).view(B, H, 1, 1)

    P = Qb @ Kb.transpose(-1, -2)  # P[t, s] = <Q_t, K_s> within a block
    lower, upper = P.tril(), P.triu()
    q_norm, k_norm = Qb.sum(-1), Kb.sum(-1)  # <Q_t, 1>, <K_t, 1>
    d_eps2 = d * eps * eps

    key_before = _exclusive_blocks(Kb.sum(-2), start("key_sum"))
    query_before = _exclusive_blocks(Qb.sum(-2), start("query_sum"))
    in_dot = (
        lower.sum(-1)
        + _dot_before(Qb, key_before)
        + eps * (prefix(k_norm) + start_total("key_sum") + q_norm)
        + d_eps2
    )
    out_dot = (
        upper.sum(-2)
        + _dot_before(Kb, query_before)
        + eps * (prefix(q_norm) + start_total("query_sum") + k_norm)
        + d_eps2
    )
    inv_in = 1.0 / in_dot
    inflow, outflow = t * inv_in, t / out_dot

    outflow_blocks = (outflow.unsqueeze(-2) @ Kb).squeeze(-2)  # sum_s O_s K_s per block
    inflow_blocks = (inflow.unsqueeze(-2) @ Qb).squeeze(-2)
    outflow_before = _exclusive_blocks(outflow_blocks, start("outflow_sum"))
    inflow_before = _exclusive_blocks(inflow_blocks, start("inflow_sum"))
    sink_dot = (
        (lower @ outflow.unsqueeze(-1)).squeeze(-1)
        + _dot_before(Qb, outflow_before)
        + eps * (prefix(outflow * k_norm) + start_total("outflow_sum") + q_norm)
        + d_eps2
    )
    source_dot = (
        (inflow.unsqueeze(-2) @ upper).squeeze(-2)
        + _dot_before(Kb, inflow_before)
        + eps * (prefix(inflow * q_norm) + start_total("inflow_sum") + k_norm)
        + d_eps2
    )
    source_exp = (source_dot / t).clamp(-clamp, clamp).exp()
    if valid is not None:
        source_exp = source_exp * blocks(valid.unsqueeze(-1)).squeeze(-1)
    competition_sum = prefix(source_exp)
    if state is not None:
        competition_sum = competition_sum + state.competition_sum.view(B, H, 1, 1)
    competition = t * source_exp / competition_sum
    scale = torch.sigmoid(sink_dot / t) * inv_in

    values = competition.unsqueeze(-1) * Vb
    out = lower @ values
    kv_blocks = Kb.transpose(-1, -2) @ values if n > 1 or return_state else None
    if kv_blocks is None:  # one block and no state wanted: only the carried S, if any
        kv_before = None if state is None else state.kv.unsqueeze(2)
    else:
        kv_before = _exclusive_blocks(kv_blocks, start("kv"))
    if kv_before is not None:
        out = out + Qb @ kv_before
    out = (scale.unsqueeze(-1) * out).reshape(B, H, n * C, -1)[:, :, :L].to(q.dtype)
    if not return_state:
        return out, None

    def total(blocks_sum: Tensor, name: str) -> Tensor:
        s = blocks_sum.sum(2)
        return s if state is None else s + getattr(state, name)

    if lengths is None:
        lengths = torch.full((B,), L, device=q.device)
    final = FlowAttentionState(
        key_sum=total(Kb.sum(-2), "key_sum"),
        query_sum=total(Qb.sum(-2), "query_sum"),
        outflow_sum=total(outflow_blocks, "outflow_sum"),
        inflow_sum=total(inflow_blocks, "inflow_sum"),
        competition_sum=competition_sum.flatten(-2)[..., -1],
        kv=total(kv_blocks, "kv"),
        position=lengths.to(torch.long) + (0 if state is None else state.position),
    )
    return out, final
