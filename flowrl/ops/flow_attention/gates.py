"""The per-token quantities of Flow-Attention that every backend shares.

Everything except the output's sum over values is a prefix sum of d-vectors, so it is
computed for a whole sequence at O(L*d) cost with `cumsum`: the two flows, the conserved
sink and source, the competition and the allocation (docs/flow-attention.md, Forward).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowrl.ops.flow_attention.feature_maps import apply_by_heads
from flowrl.ops.flow_attention.protocol import FlowOptions
from flowrl.ops.flow_attention.state import FlowAttentionState


@dataclass
class SequenceGates:
    """Per-token gates of a sequence, shapes (B, H, L), and the prefix sums at its end."""

    scale: Tensor  # A_t * I_t / t: allocation times the linear-attention normaliser
    competition: Tensor  # C_t
    source_exp: Tensor  # exp(Ohat_t)
    competition_sums: Tensor  # Z_t = sum_{s<=t} exp(Ohat_s), continuing from the state
    # after the last token, in the order of FlowAttentionState's fields:
    # key_sum, query_sum, outflow_sum, inflow_sum (B, H, d), competition_sum (B, H)
    last_sums: tuple[Tensor, ...]


def positions(length: int, state: FlowAttentionState | None, like: Tensor) -> Tensor:
    """1-based token positions, (B or 1, 1, L), continuing from `state`."""
    t = torch.arange(1, length + 1, device=like.device, dtype=like.dtype)
    if state is None:
        return t.view(1, 1, length)
    return t.view(1, 1, length) + state.position.to(like.dtype).view(-1, 1, 1)


def eps_dot(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """<a + eps, b + eps> over the last dim, without forming a + eps or b + eps."""
    return (a * b).sum(-1) + eps * (a.sum(-1) + b.sum(-1)) + a.shape[-1] * eps * eps


class PrefixDot(torch.autograd.Function):
    """y_t = <a_t + eps, P_t + eps> with P_t = start + sum_{s<=t} w_s b_s, for every t.

    a, b (B, H, L, d), w (B, H, L) or None for all ones, start (B, H, d). Autograd
    through `cumsum` would save the (B, H, L, d) prefix sum P; this saves only a, w, b
    (which the caller keeps anyway) and recomputes P in backward. The adjoint of a prefix
    sum is a suffix sum: dP_t = g_t (a_t + eps), and b_s, w_s receive R_s = sum_{t>=s} dP_t.
    """

    @staticmethod
    def forward(ctx, a: Tensor, w: Tensor | None, b: Tensor, start: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(a, w, b, start)
        ctx.eps = eps
        return eps_dot(a, PrefixDot.prefix(w, b, start), eps)

    @staticmethod
    def weighted(w: Tensor | None, b: Tensor) -> Tensor:
        return b if w is None else w.unsqueeze(-1) * b

    @staticmethod
    def prefix(w: Tensor | None, b: Tensor, start: Tensor) -> Tensor:
        return PrefixDot.weighted(w, b).cumsum(-2) + start.unsqueeze(-2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, w, b, start = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        da = g * (PrefixDot.prefix(w, b, start) + ctx.eps) if ctx.needs_input_grad[0] else None
        suffix = (g * (a + ctx.eps)).flip(-2).cumsum(-2).flip(-2)  # R_s
        dw = (b * suffix).sum(-1) if ctx.needs_input_grad[1] else None
        db = PrefixDot.weighted(w, suffix) if ctx.needs_input_grad[2] else None
        dstart = suffix[..., 0, :] if ctx.needs_input_grad[3] else None
        return da, dw, db, dstart, None


def sequence_gates(
    Q: Tensor,
    K: Tensor,
    options: FlowOptions,
    state: FlowAttentionState | None = None,
    valid: Tensor | None = None,
) -> SequenceGates:
    """Gates of feature-mapped queries and keys Q, K of shape (B, H, L, d), with the
    options' eps and clamp.

    `state` continues a sequence; `valid` (B, 1, L) is 1 on real tokens and 0 on padding,
    which must already be zero in Q and K so that it adds nothing to any prefix sum.
    """
    eps, clamp = options.eps, options.clamp
    t = positions(Q.shape[-2], state, Q)
    if state is None:
        state = FlowAttentionState.zeros(
            *Q.shape[:2], Q.shape[-1], 0, device=Q.device, dtype=Q.dtype
        )

    def prefix_dot(a: Tensor, w: Tensor | None, b: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
        """<a_t + eps, P_t + eps> for every t, and P after the last token."""
        last = start + PrefixDot.weighted(w, b).sum(-2)
        return PrefixDot.apply(a, w, b, start, eps), last

    # I_t / t and O_t / t: the normalisers; I_t and O_t carry the factor t.
    in_dot, key_sum = prefix_dot(Q, None, K, state.key_sum)
    out_dot, query_sum = prefix_dot(K, None, Q, state.query_sum)
    inv_in, inv_out = 1.0 / in_dot, 1.0 / out_dot
    inflow, outflow = t * inv_in, t * inv_out
    sink_dot, outflow_sum = prefix_dot(Q, outflow, K, state.outflow_sum)
    source_dot, inflow_sum = prefix_dot(K, inflow, Q, state.inflow_sum)
    sink = sink_dot / t
    source = (source_dot / t).clamp(-clamp, clamp)
    source_exp = source.exp()
    if valid is not None:
        source_exp = source_exp * valid
    competition_sum = source_exp.cumsum(-1) + state.competition_sum.unsqueeze(-1)
    return SequenceGates(
        scale=torch.sigmoid(sink) * inv_in,
        competition=t * source_exp / competition_sum,
        source_exp=source_exp,
        competition_sums=competition_sum,
        last_sums=(key_sum, query_sum, outflow_sum, inflow_sum, competition_sum[..., -1].clone()),
    )


def final_state(
    gates: SequenceGates, kv: Tensor, state: FlowAttentionState | None, lengths: Tensor | None
) -> FlowAttentionState:
    """The state after each row's last real token (`lengths`, None: all L), given the final
    value state S."""
    if lengths is None:
        lengths = torch.full((kv.shape[0],), gates.scale.shape[-1], device=kv.device)
    start = 0 if state is None else state.position
    return FlowAttentionState(*gates.last_sums, kv=kv, position=lengths.to(torch.long) + start)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for every input dtype except fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def features(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lengths: Tensor | None,
    feature_map: str | Sequence[str],
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """phi(q), phi(k) and v in the accumulation dtype, (B, H, L, *), zeroed after `lengths`.

    `feature_map` names phi (`feature_maps.FEATURE_MAPS`), or one map per head. Returns the
    valid mask (B, 1, L) too, or None when every row is full.
    """
    dtype = compute_dtype(q.dtype)
    # contiguous (B, H, L, d) features: the chunked matmuls then view them without copies.
    # phi of a strided view already writes a fresh contiguous tensor (no extra copy).
    Q = apply_by_heads(q.to(dtype), feature_map, 1).contiguous()
    K = apply_by_heads(k.to(dtype), feature_map, 1).contiguous()
    V = v.to(dtype)
    if lengths is None:
        return Q, K, V, None
    steps = torch.arange(q.shape[-2], device=q.device)
    valid = (steps.view(1, 1, -1) < lengths.view(-1, 1, 1)).to(dtype)
    mask = valid.unsqueeze(-1)
    return Q * mask, K * mask, V * mask, valid
