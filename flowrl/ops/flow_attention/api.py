"""Public entry points: input checks, layout, packed sequences and backend choice."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
from torch import Tensor

from flowrl.ops.flow_attention.chunked_torch import chunk_flow_attention
from flowrl.ops.flow_attention.feature_maps import head_groups
from flowrl.ops.flow_attention.naive import naive_flow_attention
from flowrl.ops.flow_attention.parallel import parallel_flow_attention
from flowrl.ops.flow_attention.recurrent_step import recurrent_flow_step
from flowrl.ops.flow_attention.state import FlowAttentionState
from flowrl.ops.flow_attention.varlen import PackedSequences

Backend = Literal["auto", "naive", "chunked", "parallel", "triton", "triton-serial"]
BACKENDS = ("auto", "naive", "chunked", "parallel", "triton", "triton-serial")
# The parallel backend takes the whole sequence as one L x L block while L is at most
# ONE_BLOCK_PER_DIM x the head dim d, and blocks of PARALLEL_BLOCK tokens (SMALL_HEAD_BLOCK
# for heads of at most SMALL_HEAD_DIM) beyond. One block costs L^2 elementwise work per head
# whatever d, blocks a constant per token: measured forward + backward on a 2-core CPU, one
# thread (benchmarks/parallel_blocks.py), one block is the faster up to about 2.5 d tokens
# (about 300 at d = 128, 150 at d = 64, 60 at d = 16), and blocks of 32 beat blocks of 64
# for d <= 64.
ONE_BLOCK_PER_DIM = 2.5
PARALLEL_BLOCK = 64
SMALL_HEAD_BLOCK = 32
SMALL_HEAD_DIM = 64
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _triton_backend(schedule: str = "chunk") -> Callable | None:
    """The fused kernels (sequence-parallel, or the serial ones kept to compare against)."""
    try:
        from flowrl.ops.flow_attention.triton import triton_flow_attention
    except ImportError:
        return None
    if schedule == "serial":
        return functools.partial(triton_flow_attention, schedule="serial")
    return triton_flow_attention


def backend_unavailable(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot run on `device` on this machine, or None when it can. "triton"
    needs the `triton` package and a CUDA device (or TRITON_INTERPRET=1, the CPU
    interpreter, set before flowrl is imported), as does "triton-serial"; the others run
    everywhere."""
    if not backend.startswith("triton"):
        return None
    if _triton_backend() is None:
        return "needs the `triton` package, which this Python cannot import"
    from flowrl.ops.flow_attention.triton_kernels import INTERPRET

    if device.type != "cuda" and not INTERPRET:
        return f"runs on CUDA devices only, not on {device.type}"
    return None


def resolve_backend(backend: str, device: torch.device) -> Callable:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "naive":
        return naive_flow_attention
    if backend == "chunked":
        return chunk_flow_attention
    if backend == "parallel" or (backend == "auto" and device.type != "cuda"):
        return parallel_by_length
    fused = _triton_backend("serial" if backend == "triton-serial" else "chunk")
    if fused is None:
        if backend.startswith("triton"):
            raise ValueError(
                f"backend={backend!r} needs the `triton` package and its kernel module"
            )
        return parallel_by_length
    return fused


def block_size_for(length: int, head_dim: int) -> int | None:
    """None (one block) up to ONE_BLOCK_PER_DIM x head_dim tokens (at least one block's
    worth); else the block size for the head dim, or the largest size down to 3/4 of it that
    divides `length` (no padded copies of q, k, v)."""
    block = SMALL_HEAD_BLOCK if head_dim <= SMALL_HEAD_DIM else PARALLEL_BLOCK
    if length <= max(block, ONE_BLOCK_PER_DIM * head_dim):
        return None
    for size in range(block, 3 * block // 4 - 1, -1):
        if length % size == 0:
            return size
    return block


def parallel_by_length(q: Tensor, k: Tensor, v: Tensor, **kw) -> tuple[Tensor, FlowAttentionState]:
    """The parallel backend with the block size `block_size_for` its length and head dim."""
    block_size = block_size_for(q.shape[-2], q.shape[-1])
    return parallel_flow_attention(q, k, v, block_size=block_size, **kw)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, rank: int, layout: str) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != rank:
            raise ValueError(
                f"{name} must have shape {layout}, got rank {x.dim()} {tuple(x.shape)}"
            )
        if x.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} has dtype {x.dtype}; expected fp16, bf16, fp32 or fp64")
    if q.shape != k.shape:
        raise ValueError(
            f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            f"v must match q in every dim but the last: q {tuple(q.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError("head dims must be positive")


def _check_constants(
    feature_map: str | Sequence[str], heads: int, eps: float, clamp: float
) -> None:
    head_groups(feature_map, heads)
    if eps <= 0 or clamp <= 0:
        raise ValueError(f"eps and clamp must be positive, got eps={eps}, clamp={clamp}")


def _check_state(state: FlowAttentionState, batch: int, heads: int, d: int, m: int) -> None:
    if not isinstance(state, FlowAttentionState):
        raise ValueError(f"state must be a FlowAttentionState, got {type(state).__name__}")
    if tuple(state.kv.shape) != (batch, heads, d, m):
        raise ValueError(
            f"state.kv has shape {tuple(state.kv.shape)}; expected {(batch, heads, d, m)} "
            "(batch or sequences, heads, key dim, value dim)"
        )


@overload
def flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, return_state: Literal[False] = ..., **kw
) -> Tensor: ...
@overload
def flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, return_state: Literal[True], **kw
) -> tuple[Tensor, FlowAttentionState]: ...
def flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    backend: Backend = "auto",
    feature_map: str | Sequence[str] = "sigmoid",
    eps: float = 1e-6,
    clamp: float = 10.0,
    cu_seqlens: Tensor | PackedSequences | None = None,
    initial_state: FlowAttentionState | None = None,
    return_state: bool = False,
):
    """Causal Flow-Attention. q, k (B, L, H, d) raw projections, v (B, L, H, m).

    `feature_map` is phi, applied to q and k: "sigmoid" (the Flowformer specification) or
    "relu" (`feature_maps.FEATURE_MAPS`), or a sequence of one name per head; every backend
    computes every map.

    With `cu_seqlens` (offsets, as flash-attn's varlen API) q, k, v hold sequences packed
    along L with B = 1, and each sequence starts afresh; a model with several layers
    passes `PackedSequences.from_offsets(cu_seqlens, L)` instead, built once per forward.
    `initial_state` continues from an earlier prefix (one row per batch row or sequence);
    `return_state=True` also returns the state after each sequence's last token.
    Output dtype is q's.
    """
    _check_qkv(q, k, v, 4, "(batch, seq, heads, dim)")
    _check_constants(feature_map, q.shape[2], eps, clamp)
    fn = resolve_backend(backend, q.device)
    _, L, H, d = q.shape
    m = v.shape[-1]
    if L == 0:
        raise ValueError("sequence length must be at least 1")

    packed = None
    if cu_seqlens is not None:
        if q.shape[0] != 1:
            raise ValueError(
                f"with cu_seqlens, q must be packed as batch 1, got batch {q.shape[0]}"
            )
        packed = (
            cu_seqlens
            if isinstance(cu_seqlens, PackedSequences)
            else PackedSequences.from_offsets(cu_seqlens, L)
        )
        if packed.total != L:
            raise ValueError(f"cu_seqlens describe {packed.total} tokens but q holds {L}")
    kw = {"return_state": return_state} if fn is parallel_by_length else {}
    native = packed is not None and q.dtype != torch.float64 and fn is _triton_backend()
    if native:  # the chunk kernels grid packed sequences as they lie
        kw["offsets"] = packed.offsets
    elif packed is not None:
        q, k, v = packed.pad(q), packed.pad(k), packed.pad(v)
    lengths = None if packed is None or native else packed.lengths
    qb, kb, vb = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, *)
    if initial_state is not None:
        _check_state(initial_state, qb.shape[0], H, d, m)

    out, state = fn(
        qb,
        kb,
        vb,
        eps=eps,
        clamp=clamp,
        initial_state=initial_state,
        lengths=lengths,
        feature_map=feature_map,
        **kw,
    )
    out = out.transpose(1, 2)
    if packed is not None and not native:
        out = packed.unpad(out)
    return (out, state) if return_state else out


def flow_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: FlowAttentionState | None = None,
    *,
    feature_map: str | Sequence[str] = "sigmoid",
    eps: float = 1e-6,
    clamp: float = 10.0,
) -> tuple[Tensor, FlowAttentionState]:
    """One token for a whole batch: q, k (B, H, d), v (B, H, m); state None starts afresh.
    Running L steps equals `flow_attention` over the L tokens with the same `feature_map`."""
    _check_qkv(q, k, v, 3, "(batch, heads, dim)")
    _check_constants(feature_map, q.shape[1], eps, clamp)
    if state is not None:
        _check_state(state, q.shape[0], q.shape[1], q.shape[2], v.shape[2])
    return recurrent_flow_step(q, k, v, state, eps=eps, clamp=clamp, feature_map=feature_map)
