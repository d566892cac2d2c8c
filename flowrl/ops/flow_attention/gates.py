"""The per-token quantities of Flow-Attention that every backend shares.

Everything except the output's sum over values is a prefix sum of d-vectors, so it is
computed for a whole sequence at O(L*d) cost with `cumsum`: the two flows, the conserved
sink and source, the competition and the allocation (flow-attention.md, The function).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowrl.ops.flow_attention.state import FlowAttentionState


@dataclass
class FlowGates:
    """Per-token gates, shapes (B, H, L), plus the prefix sums at the last token."""

    scale: Tensor  # A_t * I_t / t: allocation times the linear-attention normaliser
    competition: Tensor  # C_t
    key_sum: Tensor  # (B, H, d) after the last token
    query_sum: Tensor
    outflow_sum: Tensor
    inflow_sum: Tensor
    competition_sum: Tensor  # (B, H)


def positions(length: int, state: FlowAttentionState | None, like: Tensor) -> Tensor:
    """1-based token positions, (B or 1, 1, L), continuing from `state`."""
    t = torch.arange(1, length + 1, device=like.device, dtype=like.dtype)
    if state is None:
        return t.view(1, 1, length)
    return t.view(1, 1, length) + state.position.to(like.dtype).view(-1, 1, 1)


def flow_gates(
    Q: Tensor,
    K: Tensor,
    *,
    eps: float,
    clamp: float,
    state: FlowAttentionState | None = None,
    valid: Tensor | None = None,
) -> FlowGates:
    """Gates of feature-mapped queries and keys Q, K of shape (B, H, L, d).

    `state` continues a sequence; `valid` (B, 1, L) is 1 on real tokens and 0 on padding,
    which must already be zero in Q and K so that it adds nothing to any prefix sum.
    """
    t = positions(Q.shape[-2], state, Q)

    def prefix(x: Tensor, start: Tensor | None) -> Tensor:
        out = x.cumsum(-2)
        return out if start is None else out + start.unsqueeze(-2)

    key_sum = prefix(K, None if state is None else state.key_sum)
    query_sum = prefix(Q, None if state is None else state.query_sum)
    # I_t / t and O_t / t: the normalisers; I_t and O_t carry the factor t.
    inv_in = 1.0 / ((Q + eps) * (key_sum + eps)).sum(-1)
    inv_out = 1.0 / ((K + eps) * (query_sum + eps)).sum(-1)
    inflow, outflow = t * inv_in, t * inv_out
    outflow_sum = prefix(outflow.unsqueeze(-1) * K, None if state is None else state.outflow_sum)
    inflow_sum = prefix(inflow.unsqueeze(-1) * Q, None if state is None else state.inflow_sum)
    sink = ((Q + eps) * (outflow_sum + eps)).sum(-1) / t
    source = (((K + eps) * (inflow_sum + eps)).sum(-1) / t).clamp(-clamp, clamp)
    source_exp = source.exp()
    if valid is not None:
        source_exp = source_exp * valid
    competition_sum = source_exp.cumsum(-1)
    if state is not None:
        competition_sum = competition_sum + state.competition_sum.unsqueeze(-1)
    return FlowGates(
        scale=torch.sigmoid(sink) * inv_in,
        competition=t * source_exp / competition_sum,
        key_sum=key_sum[..., -1, :],
        query_sum=query_sum[..., -1, :],
        outflow_sum=outflow_sum[..., -1, :],
        inflow_sum=inflow_sum[..., -1, :],
        competition_sum=competition_sum[..., -1],
    )


def final_state(
    gates: FlowGates, kv: Tensor, state: FlowAttentionState | None, lengths: Tensor
) -> FlowAttentionState:
    """The state after each row's last real token, given the final value state S."""
    start = 0 if state is None else state.position
    return FlowAttentionState(
        key_sum=gates.key_sum,
        query_sum=gates.query_sum,
        outflow_sum=gates.outflow_sum,
        inflow_sum=gates.inflow_sum,
        competition_sum=gates.competition_sum,
        kv=kv,
        position=lengths.to(torch.long) + start,
    )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for every input dtype except fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def feature_map(
    q: Tensor, k: Tensor, v: Tensor, lengths: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """phi(q), phi(k) and v in the accumulation dtype, (B, H, L, *), zeroed after `lengths`.

    Returns the valid mask (B, 1, L) too, or None when every row is full.
    """
    dtype = compute_dtype(q.dtype)
    Q, K, V = torch.sigmoid(q.to(dtype)), torch.sigmoid(k.to(dtype)), v.to(dtype)
    if lengths is None:
        return Q, K, V, None
    steps = torch.arange(q.shape[-2], device=q.device)
    valid = (steps.view(1, 1, -1) < lengths.view(-1, 1, 1)).to(dtype)
    mask = valid.unsqueeze(-1)
    return Q * mask, K * mask, V * mask, valid
