"""Public entry points: input checks, layout, packed sequences and backend choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor

from flowrl.ops.flow_attention.chunked_torch import chunked_flow_attention
from flowrl.ops.flow_attention.feature_maps import head_groups
from flowrl.ops.flow_attention.naive import naive_flow_attention
from flowrl.ops.flow_attention.parallel import parallel_flow_attention
from flowrl.ops.flow_attention.protocol import DEFAULTS, Backend, FlowBatch, FlowOptions
from flowrl.ops.flow_attention.recurrent_step import recurrent_flow_step
from flowrl.ops.flow_attention.state import FlowAttentionState
from flowrl.ops.flow_attention.varlen import PackedSequences

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


def parallel_by_length(
    batch: FlowBatch, options: FlowOptions = DEFAULTS, return_state: bool = True
) -> tuple[Tensor, FlowAttentionState | None]:
    """The parallel backend with the block size `block_size_for` its length and head dim."""
    block_size = block_size_for(*batch.q.shape[-2:])
    return parallel_flow_attention(batch, options, return_state, block_size=block_size)


def triton_schedule(schedule: str) -> Backend:
    """The fused kernels of `schedule` (`triton.SCHEDULES`), imported on the first call:
    the module needs the `triton` package, and reads TRITON_INTERPRET when imported."""

    def fused(batch: FlowBatch, options: FlowOptions = DEFAULTS, return_state: bool = True):
        from flowrl.ops.flow_attention.triton import triton_flow_attention

        return triton_flow_attention(batch, options, return_state, schedule=schedule)

    return fused


# name -> (the backend, whether it takes packed sequences as they lie: `FlowBatch.offsets`)
REGISTRY: dict[str, tuple[Backend, bool]] = {
    "naive": (naive_flow_attention, False),
    "chunked": (chunked_flow_attention, False),
    "parallel": (parallel_by_length, False),
    "triton": (triton_schedule("chunk"), True),
    "triton-serial": (triton_schedule("serial"), False),
}
BackendName = Literal["auto", "naive", "chunked", "parallel", "triton", "triton-serial"]
BACKENDS = ("auto", *REGISTRY)


def triton_importable() -> bool:
    try:
        import flowrl.ops.flow_attention.triton  # noqa: F401
    except ImportError:
        return False
    return True


def backend_unavailable(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot run on `device` on this machine, or None when it can. "triton"
    needs the `triton` package and a CUDA device (or TRITON_INTERPRET=1, the CPU
    interpreter, set before flowrl is imported), as does "triton-serial"; the others run
    everywhere."""
    if not backend.startswith("triton"):
        return None
    if not triton_importable():
        return "needs the `triton` package, which this Python cannot import"
    from flowrl.ops.flow_attention.triton_kernels import INTERPRET

    if device.type != "cuda" and not INTERPRET:
        return f"runs on CUDA devices only, not on {device.type}"
    return None


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The entry of REGISTRY that runs `backend` for inputs on `device` of `dtype`: "auto"
    is "triton" on CUDA where triton imports, else "parallel"; the Triton kernels have no
    fp64, which runs on "chunked"."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "triton" if device.type == "cuda" and triton_importable() else "parallel"
    if backend.startswith("triton") and not triton_importable():
        raise ValueError(f"backend={backend!r} needs the `triton` package and its kernel module")
    return "chunked" if backend.startswith("triton") and dtype == torch.float64 else backend


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


def _check_options(options: FlowOptions, heads: int) -> None:
    head_groups(options.feature_map, heads)
    if options.eps <= 0 or options.clamp <= 0:
        raise ValueError(
            f"eps and clamp must be positive, got eps={options.eps}, clamp={options.clamp}"
        )


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
    backend: BackendName = "auto",
    feature_map: str | Sequence[str] = DEFAULTS.feature_map,
    eps: float = DEFAULTS.eps,
    clamp: float = DEFAULTS.clamp,
    cu_seqlens: Tensor | PackedSequences | None = None,
    initial_state: FlowAttentionState | None = None,
    return_state: bool = False,
):
    """Causal Flow-Attention. q, k (B, L, H, d) raw projections, v (B, L, H, m).

    `feature_map` is phi, applied to q and k: "relu" (the default, the default attention
    kind's) or "sigmoid" (the Flowformer specification) (`feature_maps.FEATURE_MAPS`), or
    a sequence of one name per head; every backend computes every map.

    With `cu_seqlens` (offsets, as flash-attn's varlen API) q, k, v hold sequences packed
    along L with B = 1, and each sequence starts afresh; a model with several layers
    passes `PackedSequences.from_offsets(cu_seqlens, L)` instead, built once per forward.
    `initial_state` continues from an earlier prefix (one row per batch row or sequence);
    `return_state=True` also returns the state after each sequence's last token.
    Output dtype is q's.
    """
    _check_qkv(q, k, v, 4, "(batch, seq, heads, dim)")
    options = FlowOptions(feature_map, eps, clamp)
    _check_options(options, q.shape[2])
    run, packs = REGISTRY[resolve_backend(backend, q.device, q.dtype)]
    _, L, H, d = q.shape
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
    padded = packed is not None and not packs
    if padded:
        q, k, v = packed.pad(q), packed.pad(k), packed.pad(v)
    if initial_state is not None:
        _check_state(initial_state, q.shape[0], H, d, v.shape[-1])
    batch = FlowBatch(
        *(x.transpose(1, 2) for x in (q, k, v)),  # (B, H, L, *)
        lengths=packed.lengths if padded else None,
        offsets=packed.offsets if packed is not None and packs else None,
        initial_state=initial_state,
    )
    out, state = run(batch, options, return_state)
    out = out.transpose(1, 2)
    if padded:
        out = packed.unpad(out)
    return (out, state) if return_state else out


def flow_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: FlowAttentionState | None = None,
    *,
    feature_map: str | Sequence[str] = DEFAULTS.feature_map,
    eps: float = DEFAULTS.eps,
    clamp: float = DEFAULTS.clamp,
) -> tuple[Tensor, FlowAttentionState]:
    """One token for a whole batch: q, k (B, H, d), v (B, H, m); state None starts afresh.
    Running L steps equals `flow_attention` over the L tokens with the same `feature_map`."""
    _check_qkv(q, k, v, 3, "(batch, heads, dim)")
    options = FlowOptions(feature_map, eps, clamp)
    _check_options(options, q.shape[1])
    if state is not None:
        _check_state(state, q.shape[0], q.shape[1], q.shape[2], v.shape[2])
    return recurrent_flow_step(q, k, v, state, options)
