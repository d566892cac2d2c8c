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


@triton.autotune(configs=FWD_CONFIGS, key=["D", "M", "FEATURE_MAP"])
@triton.jit
def _flow_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    stats_ptr,
    start_ptr,
    len_ptr,
    vec_in,
    z_in,
    kv_in,
    vec_out,
    z_out,
    kv_out,
    sqb,
    sqh,
    sql,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    sob,
    soh,
    sol,
    H,
    L,
    D,
    M,
    eps,
    clamp,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):
    """out and stats of one (row, head); final state after its last real token."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // H, bh % H
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    o_ptr += b * sob + h * soh
    field = tl.num_programs(0).to(tl.int64) * L
    stats_ptr += bh * L
    length = tl.load(len_ptr + b)
    t0 = tl.load(start_ptr + b).to(tl.float32)

    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m = tl.arange(0, BLOCK_M)
    mask_d = offs_d < D
    mask_m = offs_m < M
    eps_d = tl.where(mask_d, eps, 0.0)[None, :]
    vec = vec_in + bh * 4 * D + offs_d
    key_c = tl.load(vec, mask=mask_d, other=0.0)
    query_c = tl.load(vec + D, mask=mask_d, other=0.0)
    out_c = tl.load(vec + 2 * D, mask=mask_d, other=0.0)
    in_c = tl.load(vec + 3 * D, mask=mask_d, other=0.0)
    z = tl.load(z_in + bh)
    kv_offs = bh * D * M + offs_d[:, None] * M + offs_m[None, :]
    kv_mask = mask_d[:, None] & mask_m[None, :]
    kv = tl.load(kv_in + kv_offs, mask=kv_mask, other=0.0)
    causal = offs_c[:, None] >= offs_c[None, :]

    for start in range(0, L, BLOCK_C):
        rows = start + offs_c
        in_seq = rows < L
        valid = rows < length
        p = t0 + rows.to(tl.float32) + 1.0
        Q = _features(q_ptr, rows, offs_d, sql, valid, mask_d, FEATURE_MAP)
        K = _features(k_ptr, rows, offs_d, skl, valid, mask_d, FEATURE_MAP)
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

    vec = vec_out + bh * 4 * D + offs_d
    tl.store(vec, key_c, mask=mask_d)
    tl.store(vec + D, query_c, mask=mask_d)
    tl.store(vec + 2 * D, out_c, mask=mask_d)
    tl.store(vec + 3 * D, in_c, mask=mask_d)
    tl.store(z_out + bh, z)
    tl.store(kv_out + kv_offs, kv, mask=kv_mask)


@triton.autotune(configs=BWD_CONFIGS, key=["D", "M", "FEATURE_MAP"])
@triton.jit
def _flow_bwd_dq_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    do_ptr,
    stats_ptr,
    start_ptr,
    len_ptr,
    vec_in,
    kv_in,
    dq_ptr,
    dscale_ptr,
    carry_ptr,
    sqb,
    sqh,
    sql,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    sdb,
    sdh,
    sdl,
    H,
    L,
    D,
    M,
    clamp,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):
    """Left to right: dQ_t = scale_t S_t dout_t, dscale_t = <Q_t, S_t dout_t>, carries."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // H, bh % H
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    do_ptr += b * sdb + h * sdh
    field = tl.num_programs(0).to(tl.int64) * L
    stats_ptr += bh * L
    dq_ptr += bh * L * D
    dscale_ptr += bh * L
    carry_ptr += bh * tl.cdiv(L, BLOCK_C) * 4 * D
    length = tl.load(len_ptr + b)
    t0 = tl.load(start_ptr + b).to(tl.float32)

    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m = tl.arange(0, BLOCK_M)
    mask_d = offs_d < D
    mask_m = offs_m < M
    vec = vec_in + bh * 4 * D + offs_d
    key_c = tl.load(vec, mask=mask_d, other=0.0)
    query_c = tl.load(vec + D, mask=mask_d, other=0.0)
    out_c = tl.load(vec + 2 * D, mask=mask_d, other=0.0)
    in_c = tl.load(vec + 3 * D, mask=mask_d, other=0.0)
    kv_offs = bh * D * M + offs_d[:, None] * M + offs_m[None, :]
    kv = tl.load(kv_in + kv_offs, mask=mask_d[:, None] & mask_m[None, :], other=0.0)
    causal = offs_c[:, None] >= offs_c[None, :]

    for start in range(0, L, BLOCK_C):
        carry = carry_ptr + (start // BLOCK_C) * 4 * D + offs_d
        tl.store(carry, key_c, mask=mask_d)
        tl.store(carry + D, query_c, mask=mask_d)
        tl.store(carry + 2 * D, out_c, mask=mask_d)
        tl.store(carry + 3 * D, in_c, mask=mask_d)
        rows = start + offs_c
        in_seq = rows < L
        valid = rows < length
        p = t0 + rows.to(tl.float32) + 1.0
        Q = _features(q_ptr, rows, offs_d, sql, valid, mask_d, FEATURE_MAP)
        K = _features(k_ptr, rows, offs_d, skl, valid, mask_d, FEATURE_MAP)
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


@triton.autotune(configs=BWD_CONFIGS, key=["D", "M", "FEATURE_MAP"])
@triton.jit
def _flow_bwd_dkv_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    do_ptr,
    stats_ptr,
    start_ptr,
    len_ptr,
    dq_lin_ptr,
    dscale_ptr,
    carry_ptr,
    dq_ptr,
    dk_ptr,
    dv_ptr,
    sqb,
    sqh,
    sql,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    sdb,
    sdh,
    sdl,
    sgqb,
    sgqh,
    sgql,
    sgkb,
    sgkh,
    sgkl,
    sgvb,
    sgvh,
    sgvl,
    H,
    L,
    D,
    M,
    eps,
    clamp,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    FEATURE_MAP: tl.constexpr,
):
    """Right to left: dK, dV of the output, then the adjoint of every gate; writes dq, dk, dv."""
    bh = tl.program_id(0).to(tl.int64)
    b, h = bh // H, bh % H
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    do_ptr += b * sdb + h * sdh
    dq_ptr += b * sgqb + h * sgqh
    dk_ptr += b * sgkb + h * sgkh
    dv_ptr += b * sgvb + h * sgvh
    field = tl.num_programs(0).to(tl.int64) * L
    stats_ptr += bh * L
    dq_lin_ptr += bh * L * D
    dscale_ptr += bh * L
    n_chunks = tl.cdiv(L, BLOCK_C)
    carry_ptr += bh * n_chunks * 4 * D
    length = tl.load(len_ptr + b)
    t0 = tl.load(start_ptr + b).to(tl.float32)

    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m = tl.arange(0, BLOCK_M)
    mask_d = offs_d < D
    mask_m = offs_m < M
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
        in_seq = rows < L
        valid = rows < length
        p = t0 + rows.to(tl.float32) + 1.0
        Q = _features(q_ptr, rows, offs_d, sql, valid, mask_d, FEATURE_MAP)
        K = _features(k_ptr, rows, offs_d, skl, valid, mask_d, FEATURE_MAP)
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
        carry = carry_ptr + chunk * 4 * D + offs_d
        inflow = p * inv_in
        in_sum = tl.load(carry + 3 * D, mask=mask_d, other=0.0)[None, :]
        in_sum += tl.cumsum(inflow[:, None] * Q, 0)
        dK += dsource[:, None] * (in_sum + eps_d)
        d_in_sum = dsource[:, None] * (K + eps_d)
        r = r_in[None, :] + tl.cumsum(d_in_sum, 0, reverse=True)
        r_in += tl.sum(d_in_sum, 0)
        dinflow = tl.sum(Q * r, 1)
        dQ = inflow[:, None] * r
        dQ += tl.load(
            dq_lin_ptr + rows[:, None] * D + offs_d[None, :],
            mask=in_seq[:, None] & mask_d[None, :],
            other=0.0,
        )

        # conserved sink Ihat_t = <Q_t + eps, Sk_t + eps> / t, Sk = sum O_s K_s; A = sigmoid
        dsink = dscale * inv_in * alloc * (1.0 - alloc) / p
        outflow = p * inv_out
        out_sum = tl.load(carry + 2 * D, mask=mask_d, other=0.0)[None, :]
        out_sum += tl.cumsum(outflow[:, None] * K, 0)
        dQ += dsink[:, None] * (out_sum + eps_d)
        d_out_sum = dsink[:, None] * (Q + eps_d)
        r = r_out[None, :] + tl.cumsum(d_out_sum, 0, reverse=True)
        r_out += tl.sum(d_out_sum, 0)
        doutflow = tl.sum(K * r, 1)
        dK += outflow[:, None] * r

        # normalisers 1 / <Q_t + eps, Kc_t + eps> and 1 / <K_t + eps, Qc_t + eps>
        d_in = -(dscale * alloc + dinflow * p) * inv_in * inv_in
        d_out = -doutflow * p * inv_out * inv_out
        key_sum = tl.load(carry, mask=mask_d, other=0.0)[None, :] + tl.cumsum(K, 0)
        dQ += d_in[:, None] * (key_sum + eps_d)
        d_key_sum = d_in[:, None] * (Q + eps_d)
        dK += r_key[None, :] + tl.cumsum(d_key_sum, 0, reverse=True)
        r_key += tl.sum(d_key_sum, 0)
        query_sum = tl.load(carry + D, mask=mask_d, other=0.0)[None, :] + tl.cumsum(Q, 0)
        dK += d_out[:, None] * (query_sum + eps_d)
        d_query_sum = d_out[:, None] * (K + eps_d)
        dQ += r_query[None, :] + tl.cumsum(d_query_sum, 0, reverse=True)
        r_query += tl.sum(d_query_sum, 0)

        # through phi; Q and K are zero on padding, and so are their gradients
        d_mask = in_seq[:, None] & mask_d[None, :]
        dq = tl.where(valid[:, None], dQ * _phi_grad(Q, FEATURE_MAP), 0.0)
        dk = tl.where(valid[:, None], dK * _phi_grad(K, FEATURE_MAP), 0.0)
        tl.store(dq_ptr + rows[:, None] * sgql + offs_d[None, :], dq, mask=d_mask)
        tl.store(dk_ptr + rows[:, None] * sgkl + offs_d[None, :], dk, mask=d_mask)
