"""Sequence-parallel Triton kernels of causal Flow-Attention.

The gates are prefix sums in levels (docs/flow-attention.md): key and query totals, then
the outflow and inflow sums, then the competition total Z, then the d x m state S. Each
level is one kernel on a (chunk, head) grid that computes every chunk's share at once, and
a short scan over the chunk totals (`_scan_kernel`, one program per sequence and head and
block of columns) turns them into the sums before each chunk. Inside a chunk the sums come
from the C x C score matrix P = Q K^T: row sums of its lower triangle give <Q_t, sum K_s>,
column sums of its upper triangle <K_s, sum Q_t>, as in `parallel.py`.

The state S is carried by `_state_kernel`, one program per (sequence, head, d block,
m block) walking the chunks (flash-linear-attention's `chunk_fwd_h`); it stores S before
each chunk, and the outputs of all chunks follow in parallel. The backward mirrors this:
the same state kernel run right to left carries the adjoint state G = sum Q^T (scale dout),
one parallel kernel gives dv and the output's share of dq, dk, and three gate levels with
reverse scans give the rest, gathered by a last kernel as masked C x C matrices times Q, K.

Sequences are described by a table, so that a right-padded batch and sequences packed end
to end (`cu_seqlens`) share every kernel: row n of `seqs` holds (batch row, first token,
length, first chunk, number of chunks, start position), and `chunk_seq[g]` is the sequence
of chunk g. Packed sequences are gridded over their own chunks only.

Buffers, fp32 (S1 = 4 d + 1 columns):
    stats   (4, B*H, L)       1 / in-dot, 1 / out-dot, Ihat, Ohat (unclamped)
    totals  (G, H, S1)        per chunk: [sum K | sum Q | sum O K | sum I Q | sum e]
    before  (G, H, S1)        the same sums over everything before the chunk (+ the state)
    states  (G, H, d, m)      S before the chunk (forward), G after it (backward)
    adjoint (6, B*H, L)       dC, dscale, dOhat, d outflow, d in-dot, d out-dot
    rtotals (G, H, S1)        per chunk: [dZ share | dSk | dSq | dKc | dQc] (reverse scans)
"""

from __future__ import annotations

import triton
import triton.language as tl

from flowrl.ops.flow_attention.triton_kernels import (
    AUTOTUNE,
    INTERPRET,
    _features,
    _mm,
    _phi_grad,
    _rows,
)

STATS = 4
ADJOINTS = 6
SEQ_FIELDS = 6  # batch row, first token, length, first chunk, number of chunks, start position
KEY = ["D", "M", "PRECISION", "FEATURE_MAP", "LENGTH_BUCKET", "HEADS_BUCKET"]


def chunk_size(block_d: int, interpret: bool = INTERPRET) -> int:
    """Tokens per chunk: every kernel of one call shares it (the chunk totals are laid out by
    it), so it is fixed by the head dim rather than tuned. The interpreter takes 16, so that
    small tests span many chunks. On the GPU, 32: at 64 the backward's C x C and C x d
    tiles spill (benchmarks/kernel_resources.py)."""
    if interpret:
        return 16
    return 32


def _configs(blocks: tuple[dict, ...] = ({},)) -> list[triton.Config]:
    """8 warps: at 4, ptxas spills the C x C and C x d tiles of the heavier kernels
    (benchmarks/kernel_resources.py); the pipelining depth is tuned."""
    if INTERPRET:  # one config: the interpreter cannot autotune
        return [triton.Config({k: 16 for k in blocks[0]}, num_warps=1)]
    if not AUTOTUNE:
        return [triton.Config(blocks[0], num_warps=8, num_stages=1)]
    return [triton.Config(b, num_warps=8, num_stages=s) for b in blocks for s in (1, 2)]


CHUNK_CONFIGS = _configs()
STATE_CONFIGS = _configs(
    ({"BLOCK_K": 64, "BLOCK_V": 64}, {"BLOCK_K": 32, "BLOCK_V": 64}, {"BLOCK_K": 64, "BLOCK_V": 32})
)
OUT_CONFIGS = _configs(({"BLOCK_V": 64}, {"BLOCK_V": 32}))
SCAN_CONFIGS = _configs(({"BLOCK_W": 128},))


@triton.jit
def _sequence(seqs, n):
    """Row of sequence n in the table: batch row, first token, length, first chunk, number
    of chunks, start position."""
    row = seqs + n * 6
    return (
        tl.load(row),
        tl.load(row + 1),
        tl.load(row + 2),
        tl.load(row + 3),
        tl.load(row + 4),
        tl.load(row + 5).to(tl.float32),
    )


@triton.jit
def _chunk_features(
    q_ptr, k_ptr, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl,
    H, L, D,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """The prologue of every (chunk, head) program: chunk g and head h from the grid; the
    chunk's batch row b, its tokens (indices along L), which of them belong to its sequence,
    their 1-based positions p and offsets `at` into the (B*H, L) per-token buffers; the
    offsets within the chunk, and of the head dims and their mask; and phi(q), phi(k)
    (C, BLOCK_D) in fp32, zero off the sequence."""
    g, h = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    b, first, length, first_chunk, _, t0 = _sequence(seqs, tl.load(chunk_seq + g))
    rows = (g - first_chunk) * BLOCK_C + tl.arange(0, BLOCK_C)
    tokens, valid = first + rows, rows < length
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    Q = _features(q_ptr + b * sqb + h * sqh, tokens, offs_d, sql, valid, mask_d, FEATURE_MAP)
    K = _features(k_ptr + b * skb + h * skh, tokens, offs_d, skl, valid, mask_d, FEATURE_MAP)
    p = t0 + rows.to(tl.float32) + 1.0
    at = (b * H + h) * L + tokens
    return g, h, b, tokens, valid, p, at, tl.arange(0, BLOCK_C), offs_d, mask_d, Q, K


@triton.jit
def _gate_mm(a, b, PRECISION: tl.constexpr):
    """A matmul of gates, on fp32 operands whatever the input dtype."""
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _competition(stats_ptr, field, at, valid, p, z_before, clamp):
    """e_t = exp(clamp(Ohat_t)), Z_t = Z before the chunk + in-chunk prefix of e, C_t."""
    source = tl.load(stats_ptr + 3 * field + at, mask=valid, other=0.0)
    e = tl.where(valid, tl.exp(tl.minimum(tl.maximum(source, -clamp), clamp)), 0.0)
    total = z_before + tl.cumsum(e, 0)
    total = tl.where(valid, total, 1.0)
    return source, e, total, p * e / total


@triton.jit
def _scale(stats_ptr, field, at, valid):
    """A_t I_t / t = sigmoid(Ihat_t) / <Q_t + eps, Kc_t + eps>, and A_t, I_t / t."""
    inv_in = tl.load(stats_ptr + at, mask=valid, other=0.0)
    alloc = tl.sigmoid(tl.load(stats_ptr + 2 * field + at, mask=valid, other=0.0))
    return alloc * inv_in, alloc, inv_in


@triton.jit
def _gates_grad(
    lin_ptr, Y, a, w, c, b, g, e, before, after, causal, anticausal, mask_d, mask_cd, eps_d, D,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One side of `_bwd_qk_kernel`, before phi': the gates' share of dX for (X, Y) = (Q, K),
    or (K, Q) on the second side, given per-token scalars a, w, c, b, g, e:
        dX_t = lin_t + sum_{s<=t} (a_t w_s + c_t) Y_s + sum_{s>=t} (b_t g_s + e_s) (Y_s + eps)
               + b_t r_b + a_t (A + eps) + c_t (C + eps) + r_e
    with C, A the sums before the chunk at `before` and `before + 2 D`, and r_b, r_e the
    reverse sums after it at `after` and `after + 2 D`."""
    C = tl.load(before, mask=mask_d, other=0.0)[None, :] + eps_d
    A = tl.load(before + 2 * D, mask=mask_d, other=0.0)[None, :] + eps_d
    r_b = tl.load(after, mask=mask_d, other=0.0)[None, :]
    r_e = tl.load(after + 2 * D, mask=mask_d, other=0.0)[None, :]
    scores = tl.where(causal, a[:, None] * w[None, :] + c[:, None], 0.0)
    dX = tl.load(lin_ptr, mask=mask_cd, other=0.0) + _gate_mm(scores, Y, PRECISION)
    scores = tl.where(anticausal, b[:, None] * g[None, :] + e[None, :], 0.0)
    dX += _gate_mm(scores, Y + eps_d, PRECISION)
    return dX + (b[:, None] * r_b + a[:, None] * A + c[:, None] * C + r_e)


# ---------------------------------------------------------------------------------------
@triton.autotune(configs=SCAN_CONFIGS, key=["W", "LENGTH_BUCKET", "HEADS_BUCKET"])
@triton.jit
def _scan_kernel(
    totals, before, start, final, seqs,
    H, S1, lo, W, LENGTH_BUCKET, HEADS_BUCKET, HAS_START: tl.constexpr, HAS_FINAL: tl.constexpr,
    REVERSE: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Scans over chunk totals: before[c] = start + sum_{c' < c} totals[c'] (or, reversed, the
    sum over c' > c), one program per (sequence, head, block of columns)."""
    nh = tl.program_id(0).to(tl.int64)
    n, h = nh // H, nh % H
    cols = lo + tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = cols < lo + W
    _, _, _, first_chunk, n_chunks, _ = _sequence(seqs, n)
    if HAS_START:
        acc = tl.load(start + nh * S1 + cols, mask=mask, other=0.0)
    else:
        acc = tl.zeros((BLOCK_W,), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i if REVERSE else i
        at = ((first_chunk + c) * H + h) * S1 + cols
        x = tl.load(totals + at, mask=mask, other=0.0)
        tl.store(before + at, acc, mask=mask)
        acc += x
    if HAS_FINAL:
        tl.store(final + nh * S1 + cols, acc, mask=mask)


# ---------------------------------------------------------------------------------------
@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _fwd_sums_kernel(
    q_ptr, k_ptr, totals, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, H, L, D, M, S1, FIELD, LENGTH_BUCKET, HEADS_BUCKET,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Forward, level 1: key and query totals per chunk."""
    g, h, _b, _tokens, _valid, _p, _at, _offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    out = totals + (g * H + h) * S1 + offs_d
    tl.store(out, tl.sum(K, 0), mask=mask_d)
    tl.store(out + D, tl.sum(Q, 0), mask=mask_d)


@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _fwd_flows_kernel(
    q_ptr, k_ptr, stats_ptr, totals, before, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, H, L, D, M, S1, FIELD, eps, LENGTH_BUCKET, HEADS_BUCKET,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Forward, level 2: the normalisers 1 / <Q + eps, Kc + eps> and 1 / <K + eps, Qc + eps>,
    and the chunk totals of O K and I Q."""
    g, h, _b, _tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    sums = before + (g * H + h) * S1 + offs_d
    key_before = tl.load(sums, mask=mask_d, other=0.0)
    query_before = tl.load(sums + D, mask=mask_d, other=0.0)
    P = _gate_mm(Q, tl.trans(K), PRECISION)  # P[t, s] = <Q_t, K_s>
    q_norm, k_norm = tl.sum(Q, 1), tl.sum(K, 1)
    d_eps2 = D * eps * eps
    lower = tl.where(offs_c[:, None] >= offs_c[None, :], P, 0.0)  # s <= t
    upper = tl.where(offs_c[:, None] <= offs_c[None, :], P, 0.0)  # t <= s
    in_dot = (
        tl.sum(lower, 1)
        + tl.sum(Q * key_before[None, :], 1)
        + eps * (q_norm + tl.cumsum(k_norm, 0) + tl.sum(key_before, 0))
        + d_eps2
    )
    out_dot = (
        tl.sum(upper, 0)
        + tl.sum(K * query_before[None, :], 1)
        + eps * (k_norm + tl.cumsum(q_norm, 0) + tl.sum(query_before, 0))
        + d_eps2
    )
    inv_in, inv_out = 1.0 / in_dot, 1.0 / out_dot
    tl.store(stats_ptr + at, inv_in, mask=valid)
    tl.store(stats_ptr + FIELD + at, inv_out, mask=valid)
    outflow = tl.where(valid, p * inv_out, 0.0)
    inflow = tl.where(valid, p * inv_in, 0.0)
    out = totals + (g * H + h) * S1 + offs_d
    tl.store(out + 2 * D, tl.sum(outflow[:, None] * K, 0), mask=mask_d)
    tl.store(out + 3 * D, tl.sum(inflow[:, None] * Q, 0), mask=mask_d)


@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _fwd_gates_kernel(
    q_ptr, k_ptr, stats_ptr, totals, before, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, H, L, D, M, S1, FIELD, eps, clamp, LENGTH_BUCKET, HEADS_BUCKET,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Forward, level 3: conserved sink and source, and the chunk totals of
    e = exp(clamp(Ohat))."""
    g, h, _b, _tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    outflow = tl.where(valid, p * tl.load(stats_ptr + FIELD + at, mask=valid, other=0.0), 0.0)
    inflow = tl.where(valid, p * tl.load(stats_ptr + at, mask=valid, other=0.0), 0.0)
    sums = before + (g * H + h) * S1 + offs_d
    out_before = tl.load(sums + 2 * D, mask=mask_d, other=0.0)
    in_before = tl.load(sums + 3 * D, mask=mask_d, other=0.0)
    P = _gate_mm(Q, tl.trans(K), PRECISION)
    q_norm, k_norm = tl.sum(Q, 1), tl.sum(K, 1)
    d_eps2 = D * eps * eps
    lower = tl.where(offs_c[:, None] >= offs_c[None, :], P, 0.0)
    upper = tl.where(offs_c[:, None] <= offs_c[None, :], P, 0.0)
    sink_dot = (
        tl.sum(lower * outflow[None, :], 1)
        + tl.sum(Q * out_before[None, :], 1)
        + eps * (q_norm + tl.cumsum(outflow * k_norm, 0) + tl.sum(out_before, 0))
        + d_eps2
    )
    source_dot = (
        tl.sum(upper * inflow[:, None], 0)
        + tl.sum(K * in_before[None, :], 1)
        + eps * (k_norm + tl.cumsum(inflow * q_norm, 0) + tl.sum(in_before, 0))
        + d_eps2
    )
    source = source_dot / p
    tl.store(stats_ptr + 2 * FIELD + at, sink_dot / p, mask=valid)
    tl.store(stats_ptr + 3 * FIELD + at, source, mask=valid)
    e = tl.where(valid, tl.exp(tl.minimum(tl.maximum(source, -clamp), clamp)), 0.0)
    tl.store(totals + (g * H + h) * S1 + 4 * D, tl.sum(e, 0))


# ---------------------------------------------------------------------------------------
@triton.autotune(configs=STATE_CONFIGS, key=KEY)
@triton.jit
def _state_kernel(
    x_ptr, y_ptr, stats_ptr, before, kv_in, states, kv_out, seqs,
    sxb, sxh, sxl, syb, syh, syl, H, L, D, M, S1, FIELD, clamp, LENGTH_BUCKET, HEADS_BUCKET,
    REVERSE: tl.constexpr, HAS_START: tl.constexpr, HAS_FINAL: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr, BF16: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """The d x m state, one program per (sequence, head, d block, m block) walking its
    chunks. Forward: S before each chunk, S += K^T (C v). Backward (REVERSE): G after each
    chunk, G += Q^T (scale dout). X is phi of x_ptr, Y is y_ptr, each row weighted."""
    nh = tl.program_id(0).to(tl.int64)
    n, h = nh // H, nh % H
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_k, mask_v = offs_k < D, offs_v < M
    mask_kv = mask_k[:, None] & mask_v[None, :]
    kv_offs = offs_k[:, None] * M + offs_v[None, :]
    b, first, length, first_chunk, n_chunks, t0 = _sequence(seqs, n)
    x_ptr += b * sxb + h * sxh
    y_ptr += b * syb + h * syh
    if HAS_START:
        acc = tl.load(kv_in + nh * D * M + kv_offs, mask=mask_kv, other=0.0)
    else:
        acc = tl.zeros((BLOCK_K, BLOCK_V), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i if REVERSE else i
        rows = c * BLOCK_C + tl.arange(0, BLOCK_C)
        valid = rows < length
        tokens = first + rows
        at = (b * H + h) * L + tokens
        if REVERSE:
            weight, _, _ = _scale(stats_ptr, FIELD, at, valid)
        else:
            z_before = tl.load(before + ((first_chunk + c) * H + h) * S1 + 4 * D)
            p = t0 + rows.to(tl.float32) + 1.0
            _, _, _, weight = _competition(stats_ptr, FIELD, at, valid, p, z_before, clamp)
        X = _features(x_ptr, tokens, offs_k, sxl, valid, mask_k, FEATURE_MAP)
        Y = weight[:, None] * _rows(y_ptr, tokens, offs_v, syl, valid, mask_v)
        tl.store(states + ((first_chunk + c) * H + h) * D * M + kv_offs, acc, mask=mask_kv)
        acc += _mm(tl.trans(X), Y, BF16, PRECISION)
    if HAS_FINAL:
        tl.store(kv_out + nh * D * M + kv_offs, acc, mask=mask_kv)


@triton.autotune(configs=OUT_CONFIGS, key=KEY)
@triton.jit
def _fwd_out_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, stats_ptr, before, states, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sob, soh, sol, H, L, D, M, S1, FIELD, clamp,
    LENGTH_BUCKET, HEADS_BUCKET, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_V: tl.constexpr, BF16: tl.constexpr, PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Forward output of every chunk: A_t I_t / t (sum_{s<=t in chunk} <Q_t, K_s> C_s v_s
    + Q_t S), one program per (chunk, head, m block)."""
    g, h, b, tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    offs_v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_v = offs_v < M
    z_before = tl.load(before + (g * H + h) * S1 + 4 * D)
    _, _, _, comp = _competition(stats_ptr, FIELD, at, valid, p, z_before, clamp)
    scale, _, _ = _scale(stats_ptr, FIELD, at, valid)
    W = comp[:, None] * _rows(v_ptr + b * svb + h * svh, tokens, offs_v, svl, valid, mask_v)
    kv_offs = offs_d[:, None] * M + offs_v[None, :]
    S = tl.load(
        states + (g * H + h) * D * M + kv_offs, mask=mask_d[:, None] & mask_v[None, :], other=0.0
    )
    scores = tl.where(offs_c[:, None] >= offs_c[None, :], _mm(Q, tl.trans(K), BF16, PRECISION), 0.0)
    out = scale[:, None] * (_mm(scores, W, BF16, PRECISION) + _mm(Q, S, BF16, PRECISION))
    o_ptr += b * sob + h * soh
    tl.store(
        o_ptr + tokens[:, None] * sol + offs_v[None, :], out, mask=valid[:, None] & mask_v[None, :]
    )


# ---------------------------------------------------------------------------------------
@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _bwd_out_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, dv_ptr, stats_ptr, adj_ptr, dq_lin, dk_lin, before, states,
    dstates, rtotals, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sdb, sdh, sdl, sgb, sgh, sgl, H, L, D, M, S1,
    FIELD, eps, clamp, LENGTH_BUCKET, HEADS_BUCKET, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BF16: tl.constexpr, PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Backward, output, on a (chunk, head, 2) grid: the first program of a chunk gives the
    output's share of dq, dscale and the chunk total of dSk = dIhat (Q + eps); the second dv,
    the output's share of dk, dC and the chunk total of the competition's adjoint."""
    g, h, b, tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    z_before = tl.load(before + (g * H + h) * S1 + 4 * D)
    _, _, total, comp = _competition(stats_ptr, FIELD, at, valid, p, z_before, clamp)
    scale, alloc, inv_in = _scale(stats_ptr, FIELD, at, valid)
    causal = offs_c[:, None] >= offs_c[None, :]
    v_ptr += b * svb + h * svh
    do_ptr += b * sdb + h * sdh
    state_at = (g * H + h) * D * M
    lin = at[:, None] * D + offs_d[None, :]
    mask_cd = valid[:, None] & mask_d[None, :]
    out = rtotals + (g * H + h) * S1
    if tl.program_id(2) == 0:  # dq's share and dscale: u_t = sum_s <dout_t, W_s> K_s + S dout_t
        u = tl.zeros((BLOCK_C, BLOCK_D), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < M
            kv_offs = state_at + offs_d[:, None] * M + offs_m[None, :]
            S = tl.load(states + kv_offs, mask=mask_d[:, None] & mask_m[None, :], other=0.0)
            W = comp[:, None] * _rows(v_ptr, tokens, offs_m, svl, valid, mask_m)
            dout = _rows(do_ptr, tokens, offs_m, sdl, valid, mask_m)
            A = tl.where(causal, _mm(dout, tl.trans(W), BF16, PRECISION), 0.0)
            u += _mm(A, K, BF16, PRECISION) + _mm(dout, tl.trans(S), BF16, PRECISION)
        dscale = tl.sum(Q * u, 1)
        tl.store(dq_lin + lin, scale[:, None] * u, mask=mask_cd)
        tl.store(adj_ptr + FIELD + at, dscale, mask=valid)
        dsink = dscale * inv_in * alloc * (1.0 - alloc) / p
        tl.store(out + 1 + offs_d, tl.sum(dsink[:, None] * (Q + eps_d), 0), mask=mask_d)
    else:  # dv, dk's share and dC, from the adjoint G of the later chunks
        lower = tl.where(causal, _mm(Q, tl.trans(K), BF16, PRECISION), 0.0)  # [t, s]
        dv_ptr += b * sgb + h * sgh
        dK = tl.zeros((BLOCK_C, BLOCK_D), dtype=tl.float32)
        dcomp = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < M
            kv_offs = state_at + offs_d[:, None] * M + offs_m[None, :]
            G = tl.load(dstates + kv_offs, mask=mask_d[:, None] & mask_m[None, :], other=0.0)
            V = _rows(v_ptr, tokens, offs_m, svl, valid, mask_m)
            W = comp[:, None] * V
            gs = scale[:, None] * _rows(do_ptr, tokens, offs_m, sdl, valid, mask_m)
            dW = _mm(tl.trans(lower), gs, BF16, PRECISION) + _mm(K, G, BF16, PRECISION)
            A = tl.where(causal, _mm(gs, tl.trans(W), BF16, PRECISION), 0.0)  # [t, s]
            dK += _mm(tl.trans(A), Q, BF16, PRECISION) + _mm(W, tl.trans(G), BF16, PRECISION)
            tl.store(
                dv_ptr + tokens[:, None] * sgl + offs_m[None, :],
                comp[:, None] * dW,
                mask=valid[:, None] & mask_m[None, :],
            )
            dcomp += tl.sum(V * dW, 1)
        tl.store(dk_lin + lin, dK, mask=mask_cd)
        tl.store(adj_ptr + at, dcomp, mask=valid)
        tl.store(out, tl.sum(tl.where(valid, -dcomp * comp / total, 0.0), 0))


@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _bwd_gates_kernel(
    q_ptr, k_ptr, stats_ptr, adj_ptr, before, rtotals, rafter, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, H, L, D, M, S1, FIELD, eps, clamp, LENGTH_BUCKET, HEADS_BUCKET,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Backward, competition and sink: dOhat (through Z and the clamp) and d outflow; chunk
    totals of dSq = dOhat (K + eps)."""
    g, h, _b, _tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    dcomp = tl.load(adj_ptr + at, mask=valid, other=0.0)
    dscale = tl.load(adj_ptr + FIELD + at, mask=valid, other=0.0)
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    z_before = tl.load(before + (g * H + h) * S1 + 4 * D)
    source, e, total, comp = _competition(stats_ptr, FIELD, at, valid, p, z_before, clamp)
    _, alloc, inv_in = _scale(stats_ptr, FIELD, at, valid)
    after = rafter + (g * H + h) * S1
    z_after = tl.load(after)
    r_out = tl.load(after + 1 + offs_d, mask=mask_d, other=0.0)
    dtotal = tl.where(valid, -dcomp * comp / total, 0.0)
    de = dcomp * p / total + z_after + tl.cumsum(dtotal, 0, reverse=True)
    inside = (source >= -clamp) & (source <= clamp)
    dsource = tl.where(valid & inside, de * e / p, 0.0)
    dsink = dscale * inv_in * alloc * (1.0 - alloc) / p
    # d outflow_s = <K_s, r_out_s>, r_out_s = r_out after + sum_{t>=s} dsink_t (Q_t + eps)
    P = _gate_mm(Q, tl.trans(K), PRECISION)
    lower = tl.where(offs_c[:, None] >= offs_c[None, :], P, 0.0)
    doutflow = (
        tl.sum(K * r_out[None, :], 1)
        + tl.sum(lower * dsink[:, None], 0)
        + eps * tl.sum(K, 1) * tl.cumsum(dsink, 0, reverse=True)
    )
    tl.store(adj_ptr + 2 * FIELD + at, dsource, mask=valid)
    tl.store(adj_ptr + 3 * FIELD + at, doutflow, mask=valid)
    out = rtotals + (g * H + h) * S1 + 1 + D + offs_d
    tl.store(out, tl.sum(dsource[:, None] * (K + eps_d), 0), mask=mask_d)


@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _bwd_norms_kernel(
    q_ptr, k_ptr, stats_ptr, adj_ptr, rtotals, rafter, seqs, chunk_seq,
    sqb, sqh, sql, skb, skh, skl, H, L, D, M, S1, FIELD, eps, LENGTH_BUCKET, HEADS_BUCKET,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Backward, normalisers: d inflow, then d of the in- and out-dots; chunk totals of
    dKc = d_in (Q + eps) and dQc = d_out (K + eps)."""
    g, h, _b, _tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    _, alloc, inv_in = _scale(stats_ptr, FIELD, at, valid)
    inv_out = tl.load(stats_ptr + FIELD + at, mask=valid, other=0.0)
    dscale = tl.load(adj_ptr + FIELD + at, mask=valid, other=0.0)
    dsource = tl.load(adj_ptr + 2 * FIELD + at, mask=valid, other=0.0)
    doutflow = tl.load(adj_ptr + 3 * FIELD + at, mask=valid, other=0.0)
    r_in = tl.load(rafter + (g * H + h) * S1 + 1 + D + offs_d, mask=mask_d, other=0.0)
    # d inflow_t = <Q_t, r_in_t>, r_in_t = r_in after + sum_{s>=t} dOhat_s (K_s + eps)
    P = _gate_mm(Q, tl.trans(K), PRECISION)
    upper = tl.where(offs_c[:, None] <= offs_c[None, :], P, 0.0)
    dinflow = (
        tl.sum(Q * r_in[None, :], 1)
        + tl.sum(upper * dsource[None, :], 1)
        + eps * tl.sum(Q, 1) * tl.cumsum(dsource, 0, reverse=True)
    )
    d_in = tl.where(valid, -(dscale * alloc + dinflow * p) * inv_in * inv_in, 0.0)
    d_out = tl.where(valid, -doutflow * p * inv_out * inv_out, 0.0)
    tl.store(adj_ptr + 4 * FIELD + at, d_in, mask=valid)
    tl.store(adj_ptr + 5 * FIELD + at, d_out, mask=valid)
    out = rtotals + (g * H + h) * S1 + 1 + 2 * D + offs_d
    tl.store(out, tl.sum(d_in[:, None] * (Q + eps_d), 0), mask=mask_d)
    tl.store(out + D, tl.sum(d_out[:, None] * (K + eps_d), 0), mask=mask_d)


@triton.autotune(configs=CHUNK_CONFIGS, key=KEY)
@triton.jit
def _bwd_qk_kernel(
    q_ptr, k_ptr, dq_ptr, dk_ptr, stats_ptr, adj_ptr, dq_lin, dk_lin, before, rafter, seqs,
    chunk_seq,
    sqb, sqh, sql, skb, skh, skl, sgqb, sgqh, sgql, sgkb, sgkh, sgkl, H, L, D, M, S1, FIELD, eps,
    LENGTH_BUCKET, HEADS_BUCKET, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    """Backward, last, on a (chunk, head, 2) grid: every gate's share of dQ (first program) or
    dK (second) as masked C x C matrices times K or Q, plus the carried sums; through phi."""
    g, h, b, tokens, valid, p, at, offs_c, offs_d, mask_d, Q, K = _chunk_features(
        q_ptr, k_ptr, seqs, chunk_seq, sqb, sqh, sql, skb, skh, skl, H, L, D, BLOCK_C, BLOCK_D,
        FEATURE_MAP,
    )  # fmt: skip
    _, alloc, inv_in = _scale(stats_ptr, FIELD, at, valid)
    inflow = tl.where(valid, p * inv_in, 0.0)
    outflow = tl.where(valid, p * tl.load(stats_ptr + FIELD + at, mask=valid, other=0.0), 0.0)
    dscale = tl.load(adj_ptr + FIELD + at, mask=valid, other=0.0)
    dsink = dscale * inv_in * alloc * (1.0 - alloc) / p
    dsource = tl.load(adj_ptr + 2 * FIELD + at, mask=valid, other=0.0)
    d_in = tl.load(adj_ptr + 4 * FIELD + at, mask=valid, other=0.0)
    d_out = tl.load(adj_ptr + 5 * FIELD + at, mask=valid, other=0.0)
    sums = before + (g * H + h) * S1 + offs_d
    rs = rafter + (g * H + h) * S1 + 1 + offs_d  # after the chunk: dSk, dSq, dKc, dQc
    causal = offs_c[:, None] >= offs_c[None, :]  # [s, t'], t' <= s
    anticausal = offs_c[:, None] <= offs_c[None, :]  # [s, t], t >= s
    lin = at[:, None] * D + offs_d[None, :]
    mask_cd = valid[:, None] & mask_d[None, :]
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    if tl.program_id(2) == 0:  # dq: X = Q, Y = K
        dX = _gates_grad(
            dq_lin + lin, K, dsink, outflow, d_in, inflow, dsource, d_out, sums, rs + D,
            causal, anticausal, mask_d, mask_cd, eps_d, D, PRECISION,
        )  # fmt: skip
        X, x_ptr = Q, dq_ptr + b * sgqb + h * sgqh + tokens[:, None] * sgql
    else:  # dk: X = K, Y = Q
        dX = _gates_grad(
            dk_lin + lin, Q, dsource, inflow, d_out, outflow, dsink, d_in, sums + D, rs,
            causal, anticausal, mask_d, mask_cd, eps_d, D, PRECISION,
        )  # fmt: skip
        X, x_ptr = K, dk_ptr + b * sgkb + h * sgkh + tokens[:, None] * sgkl
    dx = tl.where(mask_cd, dX * _phi_grad(X, FEATURE_MAP), 0.0)
    tl.store(x_ptr + offs_d[None, :], dx, mask=mask_cd)


def value_block(block_d: int) -> int:
    """Columns of v per step of the backward's loop over value blocks: 32, or 16 where the
    key dim is over 64 (no spills, benchmarks/kernel_resources.py)."""
    return 16 if INTERPRET or block_d > 64 else 32
