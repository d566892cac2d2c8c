"""Triton kernels of causal Flow-Attention: one forward scan, two backward scans.

Each program owns one (batch row, head) and walks its sequence in chunks of BLOCK_C
tokens, carrying every prefix sum in fp32 (docs/flow-attention.md, Chunked evaluation;
the backward is derived there under Backward). Inside a chunk the gates are `tl.cumsum`s
of d-vectors and the output is masked C x C attention plus the carried d x m state S.

The forward saves five fp32 scalars per token in `stats`, shape (5, B*H, L):
    0  1 / <Q + eps, Kc + eps>       (I_t / t)
    1  1 / <K + eps, Qc + eps>       (O_t / t)
    2  Ihat_t                        (conserved sink)
    3  Ohat_t before the clamp       (conserved source)
    4  Z_t = sum_{s<=t} exp(Ohat_s)
Backward pass 1 (`_flow_bwd_dq_kernel`, left to right) rebuilds S and writes the
output's share of dQ, the adjoint of the scale A_t I_t / t, and the d-vector carries at
every chunk start. Pass 2 (`_flow_bwd_dkv_kernel`, right to left) carries the adjoint
state G = sum_{t>=s} Q_t (scale_t dout_t)^T for dK, dV, then runs the adjoint of every
gate as reverse prefix sums and writes dq, dk, dv.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")
# FLOWRL_TRITON_AUTOTUNE=0: one config per kernel, so that checks compile each kernel once
AUTOTUNE = os.environ.get("FLOWRL_TRITON_AUTOTUNE", "1") != "0"
STATS = 5

if INTERPRET:  # the interpreter runs one config, with small chunks so tests span several
    FWD_CONFIGS = [triton.Config({"BLOCK_C": 16}, num_warps=1)]
    BWD_CONFIGS = [triton.Config({}, num_warps=1)]
elif not AUTOTUNE:
    FWD_CONFIGS = [triton.Config({"BLOCK_C": 64}, num_warps=4, num_stages=1)]
    BWD_CONFIGS = [triton.Config({}, num_warps=4, num_stages=1)]
else:
    FWD_CONFIGS = [
        triton.Config({"BLOCK_C": c}, num_warps=w, num_stages=s)
        for c in (32, 64)
        for w in (4, 8)
        for s in (1, 2)
    ]
    BWD_CONFIGS = [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (1, 2)]


def backward_chunk(block_d: int) -> int:
    """Chunk size of both backward passes (they share the carries, so it is not tuned)."""
    if INTERPRET:
        return 16
    return 64 if block_d <= 64 else 32


@triton.jit
def _mm(a, b, BF16: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b with fp32 accumulation; bf16 operands for bf16 inputs."""
    if BF16:
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        out = tl.dot(a, b, input_precision=PRECISION)
    return out


@triton.jit
def _rows(ptr, rows, cols, stride_l, mask_rows, mask_cols):
    """A (rows, cols) tile of a row-major sequence in fp32, zero where masked."""
    mask = mask_rows[:, None] & mask_cols[None, :]
    return tl.load(ptr + rows[:, None] * stride_l + cols[None, :], mask=mask, other=0.0).to(
        tl.float32
    )


@triton.jit
def _phi(x, FEATURE_MAP: tl.constexpr):
    """The feature map (`feature_maps.FEATURE_MAPS`) of fp32 x."""
    if FEATURE_MAP == "relu":  # noqa: SIM108 (a branch per map, resolved at compile time)
        y = tl.maximum(x, 0.0)
    else:
        y = tl.sigmoid(x)
    return y


@triton.jit
def _phi_grad(y, FEATURE_MAP: tl.constexpr):
    """phi'(x) written as a function of the feature y = phi(x)."""
    if FEATURE_MAP == "relu":  # noqa: SIM108
        g = tl.where(y > 0.0, 1.0, 0.0)
    else:
        g = y * (1.0 - y)
    return g


@triton.jit
def _features(ptr, rows, cols, stride_l, valid, mask_cols, FEATURE_MAP: tl.constexpr):
    """phi(x) of one chunk, zero on padding tokens and padding columns."""
    mask = valid[:, None] & mask_cols[None, :]
    x = tl.load(ptr + rows[:, None] * stride_l + cols[None, :], mask=mask, other=0.0)
    return tl.where(mask, _phi(x.to(tl.float32), FEATURE_MAP), 0.0)


@triton.jit
def _chunk_start(q_ptr, k_ptr, sql, skl, rows, L, length, t0, offs_d, mask_d, FEATURE_MAP):
    """Of a chunk's tokens `rows`: which lie in the sequence and which are real, their
    1-based positions, and phi(q), phi(k)."""
    valid = rows < length
    Q = _features(q_ptr, rows, offs_d, sql, valid, mask_d, FEATURE_MAP)
    K = _features(k_ptr, rows, offs_d, skl, valid, mask_d, FEATURE_MAP)
    return rows < L, valid, t0 + rows.to(tl.float32) + 1.0, Q, K


@triton.jit
def _saved_gates(stats_ptr, field, rows, in_seq, valid, p, clamp):
    """The gates of one chunk from the forward's per-token scalars."""
    inv_in = tl.load(stats_ptr + rows, mask=in_seq, other=1.0)
    inv_out = tl.load(stats_ptr + field + rows, mask=in_seq, other=1.0)
    sink = tl.load(stats_ptr + 2 * field + rows, mask=in_seq, other=0.0)
    source = tl.load(stats_ptr + 3 * field + rows, mask=in_seq, other=0.0)
    total = tl.load(stats_ptr + 4 * field + rows, mask=valid, other=1.0)
    alloc = tl.sigmoid(sink)
    e = tl.where(valid, tl.exp(tl.minimum(tl.maximum(source, -clamp), clamp)), 0.0)
    return inv_in, inv_out, alloc, source, e, total, p * e / total


@triton.jit
def _prefix_dot_adjoint(start, w, Y, X, g, r_after, eps_d):
    """The adjoint, over one chunk, of y_t = <X_t + eps, P_t + eps> with the prefix sum
    P_t = start + sum_{s<=t} w_s Y_s, given dy = g and the reverse carry r_after from the
    later chunks. Returns X's share of dX, Y's share of dY, dw, and the reverse carry
    for the earlier chunks."""
    prefix = start[None, :] + tl.cumsum(w[:, None] * Y, 0)
    d_prefix = g[:, None] * (X + eps_d)
    r = r_after[None, :] + tl.cumsum(d_prefix, 0, reverse=True)
    return (
        g[:, None] * (prefix + eps_d),
        w[:, None] * r,
        tl.sum(Y * r, 1),
        r_after + tl.sum(d_prefix, 0),
    )


@triton.jit
def _bh(
    q_ptr, k_ptr, v_ptr, x_ptr, stats_ptr, start_ptr, len_ptr,
    sqb, sqh, skb, skh, svb, svh, sxb, sxh, H, L,
):  # fmt: skip
    """The prologue of every (batch row, head) program: its index bh; its row of q, k, v,
    of a fourth sequence x (the output or its gradient) and of the per-token `stats`; the
    stats' field size; the row's length and start position."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // H, bh % H
    return (
        bh, q_ptr + b * sqb + h * sqh, k_ptr + b * skb + h * skh, v_ptr + b * svb + h * svh,
        x_ptr + b * sxb + h * sxh, stats_ptr + bh * L, tl.num_programs(0).to(tl.int64) * L,
        tl.load(len_ptr + b), tl.load(start_ptr + b).to(tl.float32),
    )  # fmt: skip


@triton.jit
def _offsets(D, M, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """Token offsets of a chunk; head-dim and value-dim offsets and their masks."""
    offs_d, offs_m = tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_M)
    return tl.arange(0, BLOCK_C), offs_d, offs_m, offs_d < D, offs_m < M


@triton.jit
def _load_sums(vec, offs_d, mask_d, D):
    """The carried d-vector sums [key | query | outflow | inflow] at `vec`."""
    return (
        tl.load(vec + offs_d, mask=mask_d, other=0.0),
        tl.load(vec + D + offs_d, mask=mask_d, other=0.0),
        tl.load(vec + 2 * D + offs_d, mask=mask_d, other=0.0),
        tl.load(vec + 3 * D + offs_d, mask=mask_d, other=0.0),
    )


@triton.jit
def _store_sums(vec, key_c, query_c, out_c, in_c, offs_d, mask_d, D):
    """Stores the d-vector sums [key | query | outflow | inflow] at `vec`."""
    tl.store(vec + offs_d, key_c, mask=mask_d)
    tl.store(vec + D + offs_d, query_c, mask=mask_d)
    tl.store(vec + 2 * D + offs_d, out_c, mask=mask_d)
    tl.store(vec + 3 * D + offs_d, in_c, mask=mask_d)


# Forward: out and stats of one (row, head); the final state after its last real token.
@triton.autotune(configs=FWD_CONFIGS, key=["D", "M", "PRECISION", "FEATURE_MAP"])
@triton.jit
def _flow_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, stats_ptr, start_ptr, len_ptr, vec_in, z_in, kv_in, vec_out, z_out,
    kv_out,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sob, soh, sol, H, L, D, M, eps, clamp,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BF16: tl.constexpr,
    PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    bh, q_ptr, k_ptr, v_ptr, o_ptr, stats_ptr, field, length, t0 = _bh(q_ptr, k_ptr, v_ptr, o_ptr,
        stats_ptr, start_ptr, len_ptr, sqb, sqh, skb, skh, svb, svh, sob, soh, H, L)  # fmt: skip
    z = tl.load(z_in + bh)
    offs_c, offs_d, offs_m, mask_d, mask_m = _offsets(D, M, BLOCK_C, BLOCK_D, BLOCK_M)
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    key_c, query_c, out_c, in_c = _load_sums(vec_in + bh * 4 * D, offs_d, mask_d, D)
    kv_offs = bh * D * M + offs_d[:, None] * M + offs_m[None, :]
    kv_mask = mask_d[:, None] & mask_m[None, :]
    kv = tl.load(kv_in + kv_offs, mask=kv_mask, other=0.0)
    causal = offs_c[:, None] >= offs_c[None, :]

    for start in range(0, L, BLOCK_C):
        rows = start + offs_c
        in_seq, valid, p, Q, K = _chunk_start(
            q_ptr, k_ptr, sql, skl, rows, L, length, t0, offs_d, mask_d, FEATURE_MAP
        )
        key_sum = key_c[None, :] + tl.cumsum(K, 0)
        query_sum = query_c[None, :] + tl.cumsum(Q, 0)
        inv_in = 1.0 / tl.sum((Q + eps_d) * (key_sum + eps_d), 1)
        inv_out = 1.0 / tl.sum((K + eps_d) * (query_sum + eps_d), 1)
        OK = (p * inv_out)[:, None] * K
        IQ = (p * inv_in)[:, None] * Q
        sink = tl.sum((Q + eps_d) * (out_c[None, :] + tl.cumsum(OK, 0) + eps_d), 1) / p
        source = tl.sum((K + eps_d) * (in_c[None, :] + tl.cumsum(IQ, 0) + eps_d), 1) / p
        e = tl.where(valid, tl.exp(tl.minimum(tl.maximum(source, -clamp), clamp)), 0.0)
        total = z + tl.cumsum(e, 0)
        comp = tl.where(valid, p * e / total, 0.0)
        W = comp[:, None] * _rows(v_ptr, rows, offs_m, svl, valid, mask_m)
        scores = tl.where(causal, _mm(Q, tl.trans(K), BF16, PRECISION), 0.0)
        out = _mm(scores, W, BF16, PRECISION) + _mm(Q, kv, BF16, PRECISION)
        out *= (tl.sigmoid(sink) * inv_in)[:, None]
        o_mask = in_seq[:, None] & mask_m[None, :]
        tl.store(o_ptr + rows[:, None] * sol + offs_m[None, :], out, mask=o_mask)
        tl.store(stats_ptr + rows, inv_in, mask=in_seq)
        tl.store(stats_ptr + field + rows, inv_out, mask=in_seq)
        tl.store(stats_ptr + 2 * field + rows, sink, mask=in_seq)
        tl.store(stats_ptr + 3 * field + rows, source, mask=in_seq)
        tl.store(stats_ptr + 4 * field + rows, total, mask=in_seq)
        key_c += tl.sum(K, 0)
        query_c += tl.sum(Q, 0)
        out_c += tl.sum(OK, 0)
        in_c += tl.sum(IQ, 0)
        z += tl.sum(e, 0)
        kv += _mm(tl.trans(K), W, BF16, PRECISION)

    _store_sums(vec_out + bh * 4 * D, key_c, query_c, out_c, in_c, offs_d, mask_d, D)
    tl.store(z_out + bh, z)
    tl.store(kv_out + kv_offs, kv, mask=kv_mask)


# Backward pass 1, left to right: dQ_t = scale_t S_t dout_t, dscale_t = <Q_t, S_t dout_t>,
# and the carries at every chunk start.
@triton.autotune(configs=BWD_CONFIGS, key=["D", "M", "PRECISION", "FEATURE_MAP"])
@triton.jit
def _flow_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, start_ptr, len_ptr, vec_in, kv_in, dq_ptr, dscale_ptr,
    carry_ptr,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sdb, sdh, sdl, H, L, D, M, clamp,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BF16: tl.constexpr,
    PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    bh, q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, field, length, t0 = _bh(q_ptr, k_ptr, v_ptr, do_ptr,
        stats_ptr, start_ptr, len_ptr, sqb, sqh, skb, skh, svb, svh, sdb, sdh, H, L)  # fmt: skip
    dq_ptr += bh * L * D
    dscale_ptr += bh * L
    carry_ptr += bh * tl.cdiv(L, BLOCK_C) * 4 * D
    offs_c, offs_d, offs_m, mask_d, mask_m = _offsets(D, M, BLOCK_C, BLOCK_D, BLOCK_M)
    key_c, query_c, out_c, in_c = _load_sums(vec_in + bh * 4 * D, offs_d, mask_d, D)
    kv_offs = bh * D * M + offs_d[:, None] * M + offs_m[None, :]
    kv = tl.load(kv_in + kv_offs, mask=mask_d[:, None] & mask_m[None, :], other=0.0)
    causal = offs_c[:, None] >= offs_c[None, :]

    for start in range(0, L, BLOCK_C):
        carry = carry_ptr + (start // BLOCK_C) * 4 * D
        _store_sums(carry, key_c, query_c, out_c, in_c, offs_d, mask_d, D)
        rows = start + offs_c
        in_seq, valid, p, Q, K = _chunk_start(
            q_ptr, k_ptr, sql, skl, rows, L, length, t0, offs_d, mask_d, FEATURE_MAP
        )
        inv_in, inv_out, alloc, _, _, _, comp = _saved_gates(
            stats_ptr, field, rows, in_seq, valid, p, clamp
        )
        W = comp[:, None] * _rows(v_ptr, rows, offs_m, svl, valid, mask_m)
        dout = _rows(do_ptr, rows, offs_m, sdl, in_seq, mask_m)
        scores = tl.where(causal, _mm(dout, tl.trans(W), BF16, PRECISION), 0.0)
        u = _mm(scores, K, BF16, PRECISION) + _mm(dout, tl.trans(kv), BF16, PRECISION)
        dq_mask = in_seq[:, None] & mask_d[None, :]
        dq = (alloc * inv_in)[:, None] * u
        tl.store(dq_ptr + rows[:, None] * D + offs_d[None, :], dq, mask=dq_mask)
        tl.store(dscale_ptr + rows, tl.sum(Q * u, 1), mask=in_seq)
        key_c += tl.sum(K, 0)
        query_c += tl.sum(Q, 0)
        out_c += tl.sum((p * inv_out)[:, None] * K, 0)
        in_c += tl.sum((p * inv_in)[:, None] * Q, 0)
        kv += _mm(tl.trans(K), W, BF16, PRECISION)


# Backward pass 2, right to left: dK, dV of the output, then the adjoint of every gate;
# writes dq, dk, dv.
@triton.autotune(configs=BWD_CONFIGS, key=["D", "M", "PRECISION", "FEATURE_MAP"])
@triton.jit
def _flow_bwd_dkv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, start_ptr, len_ptr, dq_lin_ptr, dscale_ptr, carry_ptr,
    dq_ptr, dk_ptr, dv_ptr,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sdb, sdh, sdl, sgqb, sgqh, sgql, sgkb, sgkh, sgkl,
    sgvb, sgvh, sgvl, H, L, D, M, eps, clamp, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BF16: tl.constexpr, PRECISION: tl.constexpr, FEATURE_MAP: tl.constexpr,
):  # fmt: skip
    bh, q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, field, length, t0 = _bh(q_ptr, k_ptr, v_ptr, do_ptr,
        stats_ptr, start_ptr, len_ptr, sqb, sqh, skb, skh, svb, svh, sdb, sdh, H, L)  # fmt: skip
    b, h = bh // H, bh % H
    offs_c, offs_d, offs_m, mask_d, mask_m = _offsets(D, M, BLOCK_C, BLOCK_D, BLOCK_M)
    dq_ptr += b * sgqb + h * sgqh
    dk_ptr += b * sgkb + h * sgkh
    dv_ptr += b * sgvb + h * sgvh
    dq_lin_ptr += bh * L * D
    dscale_ptr += bh * L
    n_chunks = tl.cdiv(L, BLOCK_C)
    carry_ptr += bh * n_chunks * 4 * D
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    anticausal = offs_c[:, None] <= offs_c[None, :]
    # reverse prefix sums of the adjoints, carried from later chunks
    G = tl.zeros((BLOCK_D, BLOCK_M), dtype=tl.float32)
    r_total = tl.zeros((1,), dtype=tl.float32)
    r_in = tl.zeros((BLOCK_D,), dtype=tl.float32)
    r_out = tl.zeros((BLOCK_D,), dtype=tl.float32)
    r_key = tl.zeros((BLOCK_D,), dtype=tl.float32)
    r_query = tl.zeros((BLOCK_D,), dtype=tl.float32)

    for i in range(0, n_chunks):
        chunk = n_chunks - 1 - i
        rows = chunk * BLOCK_C + offs_c
        in_seq, valid, p, Q, K = _chunk_start(
            q_ptr, k_ptr, sql, skl, rows, L, length, t0, offs_d, mask_d, FEATURE_MAP
        )
        inv_in, inv_out, alloc, source, e, total, comp = _saved_gates(
            stats_ptr, field, rows, in_seq, valid, p, clamp
        )
        V = _rows(v_ptr, rows, offs_m, svl, valid, mask_m)
        W = comp[:, None] * V
        dscale = tl.load(dscale_ptr + rows, mask=in_seq, other=0.0)
        gs = (alloc * inv_in)[:, None] * _rows(do_ptr, rows, offs_m, sdl, in_seq, mask_m)

        # the output: causal linear attention of Q, K with values W = C v
        scores = tl.where(anticausal, _mm(K, tl.trans(Q), BF16, PRECISION), 0.0)
        dW = _mm(scores, gs, BF16, PRECISION) + _mm(K, G, BF16, PRECISION)
        scores = tl.where(anticausal, _mm(W, tl.trans(gs), BF16, PRECISION), 0.0)
        dK = _mm(scores, Q, BF16, PRECISION) + _mm(W, tl.trans(G), BF16, PRECISION)
        G += _mm(tl.trans(Q), gs, BF16, PRECISION)
        dv_mask = in_seq[:, None] & mask_m[None, :]
        tl.store(dv_ptr + rows[:, None] * sgvl + offs_m[None, :], comp[:, None] * dW, mask=dv_mask)
        dcomp = tl.sum(V * dW, 1)

        # competition C_t = t e_t / Z_t, Z_t = Z_0 + sum_{s<=t} e_s, e = exp(clamp(Ohat))
        dtotal = -dcomp * comp / total
        de = dcomp * p / total + r_total + tl.cumsum(dtotal, 0, reverse=True)
        r_total += tl.sum(dtotal, 0)
        clamped = (source < -clamp) | (source > clamp)
        dsource = tl.where(clamped, 0.0, de * e) / p

        # conserved source Ohat_t = <K_t + eps, Sq_t + eps> / t, Sq = sum I_s Q_s
        sums = carry_ptr + chunk * 4 * D + offs_d
        inflow = p * inv_in
        in_sum = tl.load(sums + 3 * D, mask=mask_d, other=0.0)
        dK_source, dQ, dinflow, r_in = _prefix_dot_adjoint(
            in_sum, inflow, Q, K, dsource, r_in, eps_d
        )
        dK += dK_source
        dQ += tl.load(
            dq_lin_ptr + rows[:, None] * D + offs_d[None, :],
            mask=in_seq[:, None] & mask_d[None, :],
            other=0.0,
        )

        # conserved sink Ihat_t = <Q_t + eps, Sk_t + eps> / t, Sk = sum O_s K_s; A = sigmoid
        dsink = dscale * inv_in * alloc * (1.0 - alloc) / p
        outflow = p * inv_out
        out_sum = tl.load(sums + 2 * D, mask=mask_d, other=0.0)
        dQ_sink, dK_sink, doutflow, r_out = _prefix_dot_adjoint(
            out_sum, outflow, K, Q, dsink, r_out, eps_d
        )
        dQ += dQ_sink
        dK += dK_sink

        # normalisers 1 / <Q_t + eps, Kc_t + eps> and 1 / <K_t + eps, Qc_t + eps>
        d_in = -(dscale * alloc + dinflow * p) * inv_in * inv_in
        d_out = -doutflow * p * inv_out * inv_out
        ones = tl.full((BLOCK_C,), 1.0, dtype=tl.float32)
        key_sum = tl.load(sums, mask=mask_d, other=0.0)
        dQ_key, dK_key, _, r_key = _prefix_dot_adjoint(key_sum, ones, K, Q, d_in, r_key, eps_d)
        dQ += dQ_key
        dK += dK_key
        query_sum = tl.load(sums + D, mask=mask_d, other=0.0)
        dK_query, dQ_query, _, r_query = _prefix_dot_adjoint(
            query_sum, ones, Q, K, d_out, r_query, eps_d
        )
        dK += dK_query
        dQ += dQ_query

        # through phi; Q and K are zero on padding, and so are their gradients
        d_mask = in_seq[:, None] & mask_d[None, :]
        dq = tl.where(valid[:, None], dQ * _phi_grad(Q, FEATURE_MAP), 0.0)
        dk = tl.where(valid[:, None], dK * _phi_grad(K, FEATURE_MAP), 0.0)
        tl.store(dq_ptr + rows[:, None] * sgql + offs_d[None, :], dq, mask=d_mask)
        tl.store(dk_ptr + rows[:, None] * sgkl + offs_d[None, :], dk, mask=d_mask)
