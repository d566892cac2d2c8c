"""Fused Triton backend of causal Flow-Attention, forward and backward.

The forward is one left-to-right chunked pass per (batch row, head) that computes the
feature map, both normalisers, the conserved sink and source, competition, allocation and
output, with every carry in fp32 (`triton_kernels.py`). It saves only the inputs and five
fp32 scalars per token; the backward recomputes the rest in two passes (left to right for
dQ of the output, right to left for everything else). Memory is O(L*(d+m)).

Importing this module raises ImportError without `triton`, so `api.py` falls back to the
chunked backend. fp64 inputs run the chunked backend (Triton has no fp64 tensor cores).
Gradients flow to q, k, v only: neither the initial state nor the final state is
differentiable here (use backend="chunked" for that).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
from torch import Tensor

from flowrl.ops.flow_attention.chunked_torch import chunk_flow_attention
from flowrl.ops.flow_attention.feature_maps import head_groups
from flowrl.ops.flow_attention.state import FlowAttentionState
from flowrl.ops.flow_attention.triton_kernels import (
    INTERPRET,
    STATS,
    _flow_bwd_dkv_kernel,
    _flow_bwd_dq_kernel,
    _flow_fwd_kernel,
    backward_chunk,
)


def _row_major(x: Tensor) -> Tensor:
    """x itself when its last dim is contiguous (any other strides are fine), else a copy."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(x: Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _blocks(q: Tensor, v: Tensor, feature_map: str) -> dict:
    """Compile-time sizes, matmul precision and feature map shared by the three kernels."""
    return {
        "BLOCK_D": max(16, triton.next_power_of_2(q.shape[-1])),
        "BLOCK_M": max(16, triton.next_power_of_2(v.shape[-1])),
        "BF16": q.dtype == torch.bfloat16,
        # fp16 operands could overflow (C_t v_t) or underflow (dout scaled by I_t / t)
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
        "FEATURE_MAP": feature_map,
    }


class _TritonFlowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, start, lengths, vec_in, z_in, kv_in, eps, clamp, feature_map):
        B, H, L, D = q.shape
        M = v.shape[-1]
        out = torch.empty_like(v)
        stats = torch.empty(STATS, B * H, L, device=q.device, dtype=torch.float32)
        vec_out, z_out, kv_out = (torch.empty_like(x) for x in (vec_in, z_in, kv_in))
        blocks = _blocks(q, v, feature_map)
        _flow_fwd_kernel[(B * H,)](
            q, k, v, out, stats, start, lengths, vec_in, z_in, kv_in, vec_out, z_out, kv_out,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            H, L, D, M, eps, clamp, **blocks,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, start, lengths, vec_in, kv_in, stats)
        ctx.eps, ctx.clamp, ctx.feature_map = eps, clamp, feature_map
        ctx.mark_non_differentiable(vec_out, z_out, kv_out)
        return out, vec_out, z_out, kv_out

    @staticmethod
    def backward(ctx, dout, *_):
        q, k, v, start, lengths, vec_in, kv_in, stats = ctx.saved_tensors
        dout = _row_major(dout)
        B, H, L, D = q.shape
        M = v.shape[-1]
        blocks = _blocks(q, v, ctx.feature_map)
        chunk = backward_chunk(blocks["BLOCK_D"])
        f32 = {"device": q.device, "dtype": torch.float32}
        dq_lin = torch.empty(B * H, L, D, **f32)
        dscale = torch.empty(B * H, L, **f32)
        carries = torch.empty(B * H, triton.cdiv(L, chunk), 4, D, **f32)
        _flow_bwd_dq_kernel[(B * H,)](
            q, k, v, dout, stats, start, lengths, vec_in, kv_in, dq_lin, dscale, carries,
            *_strides(q), *_strides(k), *_strides(v), *_strides(dout),
            H, L, D, M, ctx.clamp, BLOCK_C=chunk, **blocks,
        )  # fmt: skip
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _flow_bwd_dkv_kernel[(B * H,)](
            q, k, v, dout, stats, start, lengths, dq_lin, dscale, carries, dq, dk, dv,
            *_strides(q), *_strides(k), *_strides(v), *_strides(dout),
            *_strides(dq), *_strides(dk), *_strides(dv),
            H, L, D, M, ctx.eps, ctx.clamp, BLOCK_C=chunk, **blocks,
        )  # fmt: skip
        return dq, dk, dv, *[None] * 8


def triton_flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
    initial_state: FlowAttentionState | None = None,
    lengths: Tensor | None = None,
    feature_map: str | Sequence[str] = "sigmoid",
) -> tuple[Tensor, FlowAttentionState]:
    """q, k (B, H, L, d), v (B, H, L, m); returns out (B, H, L, m) and the final state.

    Same contract as `chunk_flow_attention`: `lengths` (B,) marks right padding, which
    changes no row's final state; the output has q's dtype and the state is fp32. Heads of
    different feature maps run as one launch per run of heads that share a map.
    """
    kw = {"eps": eps, "clamp": clamp, "lengths": lengths}
    if q.dtype == torch.float64:
        return chunk_flow_attention(
            q, k, v, initial_state=initial_state, feature_map=feature_map, **kw
        )
    groups = head_groups(feature_map, q.shape[1])
    if len(groups) == 1:
        name = groups[0][1]
        return _one_feature_map(q, k, v, initial_state=initial_state, feature_map=name, **kw)
    parts = [
        _one_feature_map(
            q[:, heads],
            k[:, heads],
            v[:, heads],
            initial_state=None if initial_state is None else initial_state.heads(heads),
            feature_map=name,
            **kw,
        )
        for heads, name in groups
    ]
    return torch.cat([out for out, _ in parts], 1), FlowAttentionState.cat([s for _, s in parts])


def _one_feature_map(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float,
    clamp: float,
    initial_state: FlowAttentionState | None,
    lengths: Tensor | None,
    feature_map: str,
) -> tuple[Tensor, FlowAttentionState]:
    """The kernels for heads that all share `feature_map`."""
    if q.device.type != "cuda" and not INTERPRET:
        raise ValueError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1)")
    B, H, L, D = q.shape
    M = v.shape[-1]
    f32 = {"device": q.device, "dtype": torch.float32}
    if initial_state is None:
        start = torch.zeros(B, device=q.device, dtype=torch.long)
        vec_in = torch.zeros(B, H, 4, D, **f32)
        z_in = torch.zeros(B, H, **f32)
        kv_in = torch.zeros(B, H, D, M, **f32)
    else:
        s = initial_state
        if torch.is_grad_enabled() and any(t.requires_grad for t in s.tensors().values()):
            raise ValueError(
                "the triton backend has no gradient for initial_state: detach it, "
                "or use backend='chunked'"
            )
        start = s.position.to(q.device, torch.long).contiguous()
        vec = (s.key_sum, s.query_sum, s.outflow_sum, s.inflow_sum)
        vec_in = torch.stack(vec, 2).to(**f32).contiguous()
        z_in = s.competition_sum.to(**f32).contiguous()
        kv_in = s.kv.to(**f32).contiguous()
    if lengths is None:
        lengths = torch.full((B,), L, device=q.device, dtype=torch.long)
    lengths = lengths.to(q.device, torch.long).clamp(max=L).contiguous()
    qkv = (_row_major(q), _row_major(k), _row_major(v))
    out, vec, z, kv = _TritonFlowAttention.apply(
        *qkv, start, lengths, vec_in, z_in, kv_in, eps, clamp, feature_map
    )
    state = FlowAttentionState(
        key_sum=vec[:, :, 0],
        query_sum=vec[:, :, 1],
        outflow_sum=vec[:, :, 2],
        inflow_sum=vec[:, :, 3],
        competition_sum=z,
        kv=kv,
        position=start + lengths,
    )
    return out, state
