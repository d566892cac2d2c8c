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

from flowrl.ops.flow_attention.gates import features, positions
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowBatch, FlowOptions
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


def _reverse_cumsum(x: Tensor) -> Tensor:
    """sum_{s>=t} x_s along the last dim: the adjoint of a prefix sum."""
    return x.flip(-1).cumsum(-1).flip(-1)


class OneBlockFlowAttention(torch.autograd.Function):
    """The whole sequence as one block, no carried state: the training window's case.

    Q, K (N, L, d) features, V (N, L, m), t (1 or N, L) positions, valid (N, L) or None.
    Forward is the same arithmetic as the general path below; backward is written out
    (the adjoints of the steps in reverse) so that it costs the four L x L matmuls it
    must plus a few elementwise passes, where autograd would add a pass per operation.
    """

    @staticmethod
    def forward(ctx, Q, K, V, t, valid, eps: float, clamp: float):
        d_eps2 = Q.shape[-1] * eps * eps
        P = torch.bmm(Q, K.transpose(1, 2))
        lower, upper = P.tril(), P.triu()
        q_norm, k_norm = Q.sum(-1), K.sum(-1)
        inv_in = 1.0 / (lower.sum(-1) + eps * (k_norm.cumsum(-1) + q_norm) + d_eps2)
        inv_out = 1.0 / (upper.sum(-2) + eps * (q_norm.cumsum(-1) + k_norm) + d_eps2)
        inflow, outflow = t * inv_in, t * inv_out
        sink_dot = (
            torch.bmm(lower, outflow.unsqueeze(-1)).squeeze(-1)
            + eps * ((outflow * k_norm).cumsum(-1) + q_norm)
            + d_eps2
        )
        source_dot = (
            torch.bmm(inflow.unsqueeze(1), upper).squeeze(1)
            + eps * ((inflow * q_norm).cumsum(-1) + k_norm)
            + d_eps2
        )
        source = source_dot / t
        source_exp = source.clamp(-clamp, clamp).exp()
        if valid is not None:
            source_exp = source_exp * valid
        competition_sum = source_exp.cumsum(-1)
        competition = t * source_exp / competition_sum
        allocation = torch.sigmoid(sink_dot / t)
        scale = allocation * inv_in
        values = competition.unsqueeze(-1) * V
        mixed = torch.bmm(lower, values)
        ctx.save_for_backward(
            Q, K, V, t, P, q_norm, k_norm, inv_in, inv_out, inflow, outflow, source,
            source_exp, competition_sum, competition, allocation, scale, values, mixed,
        )  # fmt: skip
        ctx.eps, ctx.clamp = eps, clamp
        return scale.unsqueeze(-1) * mixed

    @staticmethod
    def backward(ctx, grad):
        (
            Q, K, V, t, P, q_norm, k_norm, inv_in, inv_out, inflow, outflow, source,
            source_exp, competition_sum, competition, allocation, scale, values, mixed,
        ) = ctx.saved_tensors  # fmt: skip
        eps, clamp = ctx.eps, ctx.clamp
        lower, upper = P.tril(), P.triu()
        d_scale = (grad * mixed).sum(-1)
        d_mixed = scale.unsqueeze(-1) * grad
        d_lower = torch.bmm(d_mixed, values.transpose(1, 2))
        d_values = torch.bmm(lower.transpose(1, 2), d_mixed)
        d_competition = (d_values * V).sum(-1)
        d_v = competition.unsqueeze(-1) * d_values
        # scale = allocation * inv_in, allocation = sigmoid(sink_dot / t)
        d_sink = d_scale * inv_in * allocation * (1.0 - allocation) / t
        d_inv_in = d_scale * allocation
        # competition = t * e / Z, Z = cumsum(e), e = exp(clamp(source)) * valid
        d_exp = d_competition * t / competition_sum - _reverse_cumsum(
            d_competition * competition / competition_sum
        )
        inside = (source >= -clamp) & (source <= clamp)
        d_source = d_exp * source_exp * inside / t
        # source_dot = upper^T inflow + eps (cumsum(inflow q_norm) + k_norm)
        d_inflow = torch.bmm(upper, d_source.unsqueeze(-1)).squeeze(-1)
        source_tail = _reverse_cumsum(d_source)
        d_inflow = d_inflow + eps * q_norm * source_tail
        d_q_norm = eps * inflow * source_tail
        d_k_norm = eps * d_source
        # sink_dot = lower outflow + eps (cumsum(outflow k_norm) + q_norm)
        d_outflow = torch.bmm(d_sink.unsqueeze(1), lower).squeeze(1)
        sink_tail = _reverse_cumsum(d_sink)
        d_outflow = d_outflow + eps * k_norm * sink_tail
        d_k_norm = d_k_norm + eps * outflow * sink_tail
        d_q_norm = d_q_norm + eps * d_sink
        # inflow = t inv_in, outflow = t inv_out; inv = 1 / dot
        d_in = -(d_inv_in + t * d_inflow) * inv_in * inv_in
        d_out = -(t * d_outflow) * inv_out * inv_out
        # in_dot = lower 1 + eps (cumsum(k_norm) + q_norm); out_dot = 1^T upper + ...
        d_k_norm = d_k_norm + eps * (_reverse_cumsum(d_in) + d_out)
        d_q_norm = d_q_norm + eps * (_reverse_cumsum(d_out) + d_in)
        d_lower = torch.baddbmm(d_lower, d_sink.unsqueeze(-1), outflow.unsqueeze(1))
        d_lower = (d_lower + d_in.unsqueeze(-1)).tril_()
        d_upper = torch.baddbmm(d_out.unsqueeze(1), inflow.unsqueeze(-1), d_source.unsqueeze(1))
        d_P = d_lower + d_upper.triu_()
        d_Q = torch.baddbmm(d_q_norm.unsqueeze(-1), d_P, K)
        d_K = torch.baddbmm(d_k_norm.unsqueeze(-1), d_P.transpose(1, 2), Q)
        return d_Q, d_K, d_v, None, None, None, None


def parallel_flow_attention(
    batch: FlowBatch,
    options: FlowOptions = DEFAULTS,
    return_state: bool = True,
    *,
    block_size: int | None = None,
) -> tuple[Tensor, FlowAttentionState | None]:
    """The backend protocol (`protocol.py`) in blocks of `block_size` tokens.

    `block_size` None makes the whole sequence one block (cost O(L^2 * d)); without
    `return_state` the state's d x m sum is skipped. Autograd differentiates phi, the rest
    has its own backward.
    """
    q, lengths, state = batch.q, batch.lengths, batch.initial_state
    eps, clamp = options.eps, options.clamp
    B, H, L, d = q.shape
    C = L if block_size is None else min(block_size, L)
    n = -(-L // C)
    if lengths is None and n * C != L:
        lengths = torch.full((B,), L, device=q.device)
    Q, K, V, valid = features(q, batch.k, batch.v, lengths, options.feature_map)

    def blocks(x: Tensor) -> Tensor:
        """(B, H, L, *) -> (B, H, n, C, *), zero-padded at the end: pads add to no sum."""
        if n * C != L:
            x = F.pad(x, (0, 0, 0, n * C - L))
        return x.reshape(B, x.shape[1], n, C, x.shape[-1])

    if n == 1 and state is None and not return_state:
        mask = None if valid is None else valid.expand(B, H, L).reshape(B * H, L)
        out = OneBlockFlowAttention.apply(
            Q.reshape(B * H, L, d),
            K.reshape(B * H, L, d),
            V.reshape(B * H, L, -1),
            positions(L, None, Q).view(1, L),
            mask,
            eps,
            clamp,
        )
        return out.view(B, H, L, -1).to(q.dtype), None

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

    carry = n > 1 or state is not None  # whether any sum crosses into a block from before
    key_blocks = Kb.sum(-2) if carry or return_state else None
    query_blocks = Qb.sum(-2) if carry or return_state else None
    key_before = _exclusive_blocks(key_blocks, start("key_sum")) if carry else None
    query_before = _exclusive_blocks(query_blocks, start("query_sum")) if carry else None
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

    outflow_blocks = inflow_blocks = outflow_before = inflow_before = None
    if carry or return_state:
        outflow_blocks = (outflow.unsqueeze(-2) @ Kb).squeeze(-2)  # sum_s O_s K_s per block
        inflow_blocks = (inflow.unsqueeze(-2) @ Qb).squeeze(-2)
    if carry:
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
        key_sum=total(key_blocks, "key_sum"),
        query_sum=total(query_blocks, "query_sum"),
        outflow_sum=total(outflow_blocks, "outflow_sum"),
        inflow_sum=total(inflow_blocks, "inflow_sum"),
        competition_sum=competition_sum.flatten(-2)[..., -1],
        kv=total(kv_blocks, "kv"),
        position=lengths.to(torch.long) + (0 if state is None else state.position),
    )
    return out, final
