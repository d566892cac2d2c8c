"""Fused Triton backend of causal Flow-Attention, forward and backward.

The forward is one left-to-right chunked pass per (batch row, head) that computes the
feature map, both normalisers, the conserved sink and source, competition, allocation and
output, with every carry in fp32 (`triton_kernels.py`). It saves only the inputs and five
fp32 scalars per token; the backward recomputes the rest in two passes (left to right for
dQ of the output, right to left for everything else). Memory is O(L*(d+m)).

Importing this module raises ImportError without `triton`, so `api.py` falls back to the
parallel backend. fp64 inputs run the chunked backend (Triton has no fp64 tensor cores).
Gradients flow to q, k, v only: neither the initial state nor the final state is
differentiable here (use backend="chunked" for that).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import torch
import triton
from torch import Tensor

from flowrl.ops.flow_attention import triton_chunk_kernels as ck
from flowrl.ops.flow_attention.feature_maps import head_groups
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowBatch, FlowOptions
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


@torch.compiler.disable  # torch.compile cannot trace the torch >= 2.9 getter
def fp32_matmuls_use_tf32() -> bool:
    """Whether PyTorch lets fp32 CUDA matmuls round their inputs to TF32: the setting of
    `torch.set_float32_matmul_precision("high")`, `torch.backends.cuda.matmul.allow_tf32`
    or (torch >= 2.9) `torch.backends.cuda.matmul.fp32_precision`. Off by default."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # reading allow_tf32 raises once this was set
        return matmul.fp32_precision == "tf32"
    return bool(matmul.allow_tf32)


def _precision(dtype: torch.dtype) -> str:
    """`tl.dot`'s input precision for fp32 tiles. fp16 inputs are converted to fp32 tiles (in
    fp16, C_t v_t could overflow and dout scaled by I_t / t underflow) that multiply in TF32;
    bf16 ones multiply in bf16 (`BF16`). fp32 inputs multiply in IEEE fp32 unless PyTorch lets
    fp32 matmuls use TF32, as torch's own matmuls (and so `parallel` and `chunked`) do."""
    return "ieee" if dtype == torch.float32 and not fp32_matmuls_use_tf32() else "tf32"


def _block(size: int) -> int:
    """The tile width that holds a head dim of `size` (a power of two, at least 16)."""
    return max(16, triton.next_power_of_2(size))


def _blocks(q: Tensor, v: Tensor, feature_map: str) -> dict:
    """Compile-time sizes, matmul precision and feature map shared by the three kernels."""
    return {
        "BLOCK_D": _block(q.shape[-1]),
        "BLOCK_M": _block(v.shape[-1]),
        "BF16": q.dtype == torch.bfloat16,
        "PRECISION": _precision(q.dtype),
        "FEATURE_MAP": feature_map,
    }


class _SerialFlowAttention(torch.autograd.Function):
    """The serial kernels: one program per (batch row, head) walks the whole sequence."""

    @staticmethod
    def forward(ctx, q, k, v, start, lengths, vec_in, z_in, kv_in, eps, clamp, feature_map):
        (B, H, L, D), M = q.shape, v.shape[-1]
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
        (B, H, L, D), M = q.shape, v.shape[-1]
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


def _sequence_table(
    B: int,
    L: int,
    chunk: int,
    lengths: Tensor | None,
    offsets: list[int] | None,
    position: Tensor,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """`seqs` (n, 6) and `chunk_seq` (G,) of `triton_chunk_kernels`: B right-padded rows
    (every row gets cdiv(L, chunk) chunks; those past its length store nothing), or the
    sequences packed along the single row at `offsets`, each on its own chunks."""
    long = {"device": device, "dtype": torch.long}
    if offsets is None:
        per_row = triton.cdiv(L, chunk)
        length = torch.full((B,), L, **long) if lengths is None else lengths
        first = torch.arange(B, **long)
        columns = (
            first,
            torch.zeros(B, **long),
            length,
            first * per_row,
            (length + chunk - 1) // chunk,
            position,
        )
        chunk_seq = torch.arange(B * per_row, **long) // per_row
    else:
        sizes = [b - a for a, b in itertools.pairwise(offsets)]
        counts = [triton.cdiv(x, chunk) for x in sizes]
        firsts = [sum(counts[:i]) for i in range(len(counts))]
        n = len(sizes)
        host = torch.tensor([offsets[:-1], sizes, firsts, counts], dtype=torch.long).to(device)
        columns = (torch.zeros(n, **long), *host, position)
        chunk_seq = torch.repeat_interleave(torch.arange(n, **long), host[3])
    return torch.stack(columns, 1).contiguous(), chunk_seq


def _chunk_meta(q: Tensor, v: Tensor, feature_map: str) -> dict:
    """The constexprs the chunk kernels share, and their autotune buckets."""
    B, H, L, _ = q.shape
    blocks = _blocks(q, v, feature_map)
    return {
        "BLOCK_C": ck.chunk_size(blocks["BLOCK_D"]),
        "BLOCK_D": blocks["BLOCK_D"],
        "PRECISION": blocks["PRECISION"],
        "FEATURE_MAP": feature_map,
        "BF16": blocks["BF16"],
        "LENGTH_BUCKET": triton.next_power_of_2(L),
        "HEADS_BUCKET": triton.next_power_of_2(B * H),
    }


def _pick(meta: dict, *names: str) -> dict:
    return {name: meta[name] for name in names}


GATE = ("BLOCK_C", "BLOCK_D", "PRECISION", "FEATURE_MAP", "LENGTH_BUCKET", "HEADS_BUCKET")
VALUE = ("BLOCK_C", "BF16", "PRECISION", "FEATURE_MAP", "LENGTH_BUCKET", "HEADS_BUCKET")


def _scan(totals, before, start, final, seqs, H, S1, lo, width, meta, reverse=False):
    """Exclusive scan of columns [lo, lo + width) of the chunk totals, per sequence."""
    n = seqs.shape[0]
    ends = (start if start is not None else totals, final if final is not None else totals)
    ck._scan_kernel[lambda m: (n * H, triton.cdiv(width, m["BLOCK_W"]))](
        totals, before, *ends, seqs, H, S1, lo, width, meta["LENGTH_BUCKET"],
        meta["HEADS_BUCKET"], HAS_START=start is not None, HAS_FINAL=final is not None,
        REVERSE=reverse,
    )  # fmt: skip


def _states(x, y, stats, before, kv_in, kv_out, seqs, G, clamp, meta, reverse):
    """S before every chunk (forward), or the adjoint G after it (`reverse`)."""
    B, H, L, D = x.shape
    M = y.shape[-1]
    n = seqs.shape[0]
    states = torch.empty(G, H, D, M, device=x.device, dtype=torch.float32)
    grid = lambda m: (n * H, triton.cdiv(D, m["BLOCK_K"]), triton.cdiv(M, m["BLOCK_V"]))  # noqa: E731
    ends = (
        kv_in if kv_in is not None else states,
        states,
        kv_out if kv_out is not None else states,
    )
    ck._state_kernel[grid](
        x, y, stats, before, *ends, seqs, *_strides(x), *_strides(y),
        H, L, D, M, 4 * D + 1, B * H * L, clamp, REVERSE=reverse,
        HAS_START=kv_in is not None, HAS_FINAL=kv_out is not None, **_pick(meta, *VALUE),
    )  # fmt: skip
    return states


class _ChunkFlowAttention(torch.autograd.Function):
    """The sequence-parallel kernels (`triton_chunk_kernels`): every level of gates on a
    (chunk, head) grid, short scans over chunk totals, the state carried per value block."""

    @staticmethod
    def forward(ctx, q, k, v, seqs, chunk_seq, vec_in, kv_in, eps, clamp, feature_map, padded):
        (B, H, L, D), M = q.shape, v.shape[-1]
        G, n, S1, FIELD = chunk_seq.shape[0], seqs.shape[0], 4 * D + 1, B * H * L
        meta = _chunk_meta(q, v, feature_map)
        gate = _pick(meta, *GATE)
        f32 = {"device": q.device, "dtype": torch.float32}
        stats = torch.empty(ck.STATS, B * H, L, **f32)
        totals, before = torch.empty(G, H, S1, **f32), torch.empty(G, H, S1, **f32)
        vec_out, kv_out = torch.empty(n, H, S1, **f32), torch.empty(n, H, D, M, **f32)
        # every (chunk, head) kernel takes the sequence table and q's and k's strides, then
        # its other strides, then the sizes
        table, sizes = (seqs, chunk_seq, *_strides(q), *_strides(k)), (H, L, D, M, S1, FIELD)
        scan = (totals, before, vec_in, vec_out, seqs, H, S1)
        ck._fwd_sums_kernel[(G, H)](q, k, totals, *table, *sizes, **gate)
        _scan(*scan, 0, 2 * D, meta)
        ck._fwd_flows_kernel[(G, H)](q, k, stats, totals, before, *table, *sizes, eps, **gate)
        _scan(*scan, 2 * D, 2 * D, meta)
        ck._fwd_gates_kernel[(G, H)](
            q, k, stats, totals, before, *table, *sizes, eps, clamp, **gate
        )
        _scan(*scan, 4 * D, 1, meta)
        states = _states(k, v, stats, before, kv_in, kv_out, seqs, G, clamp, meta, False)
        out = torch.zeros_like(v) if padded else torch.empty_like(v)
        ck._fwd_out_kernel[lambda m: (G, H, triton.cdiv(M, m["BLOCK_V"]))](
            q, k, v, out, stats, before, states, *table, *_strides(v), *_strides(out), *sizes,
            clamp,
            BLOCK_D=meta["BLOCK_D"], **_pick(meta, *VALUE),
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, seqs, chunk_seq, kv_in, stats, before)
        ctx.eps, ctx.clamp, ctx.feature_map, ctx.padded = eps, clamp, feature_map, padded
        ctx.mark_non_differentiable(vec_out, kv_out)
        return out, vec_out, kv_out

    @staticmethod
    def backward(ctx, dout, *_):
        q, k, v, seqs, chunk_seq, kv_in, stats, before = ctx.saved_tensors
        dout = _row_major(dout)
        (B, H, L, D), M = q.shape, v.shape[-1]
        G, S1, FIELD = chunk_seq.shape[0], 4 * D + 1, B * H * L
        eps, clamp = ctx.eps, ctx.clamp
        meta = _chunk_meta(q, v, ctx.feature_map)
        gate = _pick(meta, *GATE)
        f32 = {"device": q.device, "dtype": torch.float32}
        states = _states(k, v, stats, before, kv_in, None, seqs, G, clamp, meta, False)
        dstates = _states(q, dout, stats, before, None, None, seqs, G, clamp, meta, True)
        new = torch.zeros_like if ctx.padded else torch.empty_like
        dq, dk, dv = new(q), new(k), new(v)
        dq_lin, dk_lin = torch.empty(B * H, L, D, **f32), torch.empty(B * H, L, D, **f32)
        adjoint = torch.empty(ck.ADJOINTS, B * H, L, **f32)
        rtotals, rafter = torch.empty(G, H, S1, **f32), torch.empty(G, H, S1, **f32)
        table, sizes = (seqs, chunk_seq, *_strides(q), *_strides(k)), (H, L, D, M, S1, FIELD)
        scan = (rtotals, rafter, None, None, seqs, H, S1)
        ck._bwd_out_kernel[(G, H, 2)](
            q, k, v, dout, dv, stats, adjoint, dq_lin, dk_lin, before, states, dstates, rtotals,
            *table, *_strides(v), *_strides(dout), *_strides(dv), *sizes, eps, clamp,
            BLOCK_D=meta["BLOCK_D"], BLOCK_M=ck.value_block(meta["BLOCK_D"]),
            **_pick(meta, *VALUE),
        )  # fmt: skip
        _scan(*scan, 0, 1 + D, meta, reverse=True)
        ck._bwd_gates_kernel[(G, H)](
            q, k, stats, adjoint, before, rtotals, rafter, *table, *sizes, eps, clamp, **gate
        )
        _scan(*scan, 1 + D, D, meta, reverse=True)
        ck._bwd_norms_kernel[(G, H)](
            q, k, stats, adjoint, rtotals, rafter, *table, *sizes, eps, **gate
        )
        _scan(*scan, 1 + 2 * D, 2 * D, meta, reverse=True)
        ck._bwd_qk_kernel[(G, H, 2)](
            q, k, dq, dk, stats, adjoint, dq_lin, dk_lin, before, rafter, *table,
            *_strides(dq), *_strides(dk), *sizes, eps, **gate,
        )  # fmt: skip
        return dq, dk, dv, *[None] * 8


def triton_flow_attention(
    batch: FlowBatch,
    options: FlowOptions = DEFAULTS,
    return_state: bool = True,
    *,
    schedule: str = "chunk",
) -> tuple[Tensor, FlowAttentionState | None]:
    """The backend protocol (`protocol.py`) on the fused kernels, for fp16, bf16 and fp32
    (the dispatch runs fp64 on the chunked backend); the state is fp32.

    `lengths` marks right padding, which changes no row's final state; `offsets` packs
    sequences along the one row of B = 1, each with its own row of the state. Heads of
    different feature maps run as one launch per run of heads that share a map.
    `schedule` "chunk" runs the sequence-parallel kernels; "serial" the earlier
    one-program-per-row kernels (no `offsets`), kept to compare against.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: expected one of {', '.join(SCHEDULES)}")
    q, state = batch.q, batch.initial_state
    if q.dtype == torch.float64:
        raise ValueError("the triton backend takes fp16, bf16 or fp32; fp64 runs on 'chunked'")
    if batch.offsets is not None and schedule == "serial":
        raise ValueError("packed offsets need the chunk schedule")
    if q.device.type != "cuda" and not INTERPRET:
        raise ValueError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1)")
    if (
        state is not None
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in state.tensors().values())
    ):
        raise ValueError(
            "the triton backend has no gradient for initial_state: detach it, "
            "or use backend='chunked'"
        )
    one = _chunk_schedule if schedule == "chunk" else _serial_schedule
    groups = head_groups(options.feature_map, q.shape[1])
    parts = [
        one(
            replace(
                batch,
                q=batch.q[:, heads],
                k=batch.k[:, heads],
                v=batch.v[:, heads],
                initial_state=None if state is None else state.heads(heads),
            ),
            options.eps,
            options.clamp,
            name,
        )
        for heads, name in groups
    ]
    out = parts[0][0] if len(parts) == 1 else torch.cat([o for o, _ in parts], 1)
    if not return_state:
        return out, None
    return out, parts[0][1] if len(parts) == 1 else FlowAttentionState.cat([s for _, s in parts])


SCHEDULES = ("chunk", "serial")


def _chunk_schedule(
    batch: FlowBatch, eps: float, clamp: float, feature_map: str
) -> tuple[Tensor, FlowAttentionState]:
    """The sequence-parallel kernels for heads that all share `feature_map`."""
    q, k, v, lengths, offsets = batch.q, batch.k, batch.v, batch.lengths, batch.offsets
    initial_state = batch.initial_state
    B, H, L, D = q.shape
    M = v.shape[-1]
    n = B if offsets is None else len(offsets) - 1
    f32 = {"device": q.device, "dtype": torch.float32}
    if initial_state is None:
        position = torch.zeros(n, device=q.device, dtype=torch.long)
        vec_in = torch.zeros(n, H, 4 * D + 1, **f32)
        kv_in = torch.zeros(n, H, D, M, **f32)
    else:
        s = initial_state
        position = s.position.to(q.device, torch.long)
        vec = (s.key_sum, s.query_sum, s.outflow_sum, s.inflow_sum, s.competition_sum[..., None])
        vec_in = torch.cat(vec, -1).to(**f32).contiguous()
        kv_in = s.kv.to(**f32).contiguous()
    if lengths is not None:
        lengths = lengths.to(q.device, torch.long).clamp(max=L)
    chunk = ck.chunk_size(_block(D))
    seqs, chunk_seq = _sequence_table(B, L, chunk, lengths, offsets, position, q.device)
    qkv = (_row_major(q), _row_major(k), _row_major(v))
    out, vec, kv = _ChunkFlowAttention.apply(
        *qkv, seqs, chunk_seq, vec_in, kv_in, eps, clamp, feature_map, lengths is not None
    )
    state = FlowAttentionState(
        key_sum=vec[..., :D],
        query_sum=vec[..., D : 2 * D],
        outflow_sum=vec[..., 2 * D : 3 * D],
        inflow_sum=vec[..., 3 * D : 4 * D],
        competition_sum=vec[..., 4 * D],
        kv=kv,
        position=position + seqs[:, 2],
    )
    return out, state


def _serial_schedule(
    batch: FlowBatch, eps: float, clamp: float, feature_map: str
) -> tuple[Tensor, FlowAttentionState]:
    """The serial kernels for heads that all share `feature_map`."""
    q, k, v, lengths, initial_state = batch.q, batch.k, batch.v, batch.lengths, batch.initial_state
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
        start = s.position.to(q.device, torch.long).contiguous()
        vec = (s.key_sum, s.query_sum, s.outflow_sum, s.inflow_sum)
        vec_in = torch.stack(vec, 2).to(**f32).contiguous()
        z_in = s.competition_sum.to(**f32).contiguous()
        kv_in = s.kv.to(**f32).contiguous()
    if lengths is None:
        lengths = torch.full((B,), L, device=q.device, dtype=torch.long)
    lengths = lengths.to(q.device, torch.long).clamp(max=L).contiguous()
    qkv = (_row_major(q), _row_major(k), _row_major(v))
    out, vec, z, kv = _SerialFlowAttention.apply(
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
