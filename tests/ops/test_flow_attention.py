"""Flow-Attention backends against an independent float64 evaluation of the spec, for every
feature map (the `feature_map` fixture runs a test once per entry of FEATURE_MAPS)."""

from __future__ import annotations

import pytest
import torch

from flowrl.ops import (
    FlowAttentionState,
    PackedSequences,
    flow_attention,
    flow_attention_step,
)
from flowrl.ops.flow_attention import FlowOptions
from flowrl.ops.flow_attention.api import block_size_for, resolve_backend
from flowrl.ops.flow_attention.chunked_torch import chunked_flow_attention
from flowrl.ops.flow_attention.parallel import parallel_flow_attention
from flowrl.ops.flow_attention.protocol import FlowBatch
from tests.ops.flow_reference import (
    random_qkv,
    reference_by_heads,
    reference_flow_attention,
    relative_error,
)

BACKENDS = ["naive", "chunked", "parallel", "recurrent"]
SEQUENCE_BACKENDS = ["naive", "chunked", "parallel"]


def run_backend(backend, q, k, v, **kw):
    if backend != "recurrent":
        return flow_attention(q, k, v, backend=backend, **kw)
    state, outs = None, []
    for t in range(q.shape[1]):
        out, state = flow_attention_step(q[:, t], k[:, t], v[:, t], state, **kw)
        outs.append(out)
    return torch.stack(outs, 1)


def outputs_and_grads(fn, q, k, v, dout):
    out = fn(q, k, v)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    return out, grads


def assert_matches_reference(backend, q, k, v, tol, **kw):
    dout = torch.randn(*q.shape[:-1], v.shape[-1], dtype=torch.float64)
    ref, ref_grads = outputs_and_grads(lambda *x: reference_flow_attention(*x, **kw), q, k, v, dout)
    out, grads = outputs_and_grads(
        lambda *x: run_backend(backend, *x, **kw), q, k, v, dout.to(q.dtype)
    )
    assert out.dtype == q.dtype
    assert relative_error(out, ref) < tol, f"output: {relative_error(out, ref):.2e}"
    for name, g, rg in zip("qkv", grads, ref_grads, strict=True):
        assert relative_error(g, rg) < tol, f"d{name}: {relative_error(g, rg):.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", [2, 63, 64, 65, 150])
def test_fp32_matches_reference(backend, L, feature_map):
    q, k, v = random_qkv(2, L, 3, 16, 8)
    assert_matches_reference(backend, q, k, v, tol=1e-4, feature_map=feature_map)


@pytest.mark.parametrize("backend", BACKENDS)
def test_length_one_matches_reference(backend, feature_map):
    """At L = 1 the sink is 1 up to eps, so dq and dk are O(eps): checked in float64."""
    kw = {"feature_map": feature_map}
    q, k, v = random_qkv(3, 1, 2, 16, 8, dtype=torch.float64)
    assert_matches_reference(backend, q, k, v, tol=1e-9, **kw)
    q, k, v = (x.detach().float() for x in (q, k, v))
    out, ref = run_backend(backend, q, k, v, **kw), reference_flow_attention(q, k, v, **kw)
    assert relative_error(out, ref) < 1e-5


@pytest.mark.parametrize("chunk_size", [1, 7, 16])
@pytest.mark.parametrize("L", [5, 33, 100])
def test_chunk_sizes_match_reference(chunk_size, L, feature_map):
    """Many chunks, last one partial: the carries between chunks are exercised."""
    q, k, v = random_qkv(1, L, 2, 8, 12)

    def chunked(q, k, v):
        qkv_t = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        batch, options = FlowBatch(*qkv_t), FlowOptions(feature_map)
        out, _ = chunked_flow_attention(batch, options, chunk_size=chunk_size)
        return out.transpose(1, 2)

    dout = torch.randn(1, L, 2, 12, dtype=torch.float64)
    ref, ref_grads = outputs_and_grads(
        lambda *x: reference_flow_attention(*x, feature_map=feature_map), q, k, v, dout
    )
    out, grads = outputs_and_grads(chunked, q, k, v, dout.float())
    assert relative_error(out, ref) < 1e-4
    for g, rg in zip(grads, ref_grads, strict=True):
        assert relative_error(g, rg) < 1e-4


@pytest.mark.parametrize("block_size", [1, 7, 16, None])
@pytest.mark.parametrize("L", [5, 33, 100])
def test_parallel_block_sizes_match_reference(block_size, L, feature_map):
    """One block (C = L) and many blocks, the last one partial: the carried sums."""
    q, k, v = random_qkv(2, L, 2, 8, 12, seed=L)

    def parallel(q, k, v):
        qkv_t = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        batch, options = FlowBatch(*qkv_t), FlowOptions(feature_map)
        out, _ = parallel_flow_attention(batch, options, block_size=block_size)
        return out.transpose(1, 2)

    dout = torch.randn(2, L, 2, 12, dtype=torch.float64)
    ref, ref_grads = outputs_and_grads(
        lambda *x: reference_flow_attention(*x, feature_map=feature_map), q, k, v, dout
    )
    out, grads = outputs_and_grads(parallel, q, k, v, dout.float())
    assert relative_error(out, ref) < 1e-4
    for g, rg in zip(grads, ref_grads, strict=True):
        assert relative_error(g, rg) < 1e-4


@pytest.mark.parametrize(
    ("L", "d", "one_block"),
    [(40, 16, True), (117, 16, False), (900, 16, False), (160, 64, True), (161, 64, False)],
)
def test_auto_on_cpu_matches_reference_on_both_sides_of_the_threshold(L, d, one_block, feature_map):
    """`auto` is one block up to 2.5 d tokens and blocks beyond: both exact."""
    assert resolve_backend("auto", torch.device("cpu")) == "parallel"
    assert (block_size_for(L, d) is None) == one_block
    q, k, v = random_qkv(1, L, 1, d, d, seed=L)
    assert_matches_reference("auto", q, k, v, tol=1e-4, feature_map=feature_map)


@pytest.mark.parametrize("backend", SEQUENCE_BACKENDS)
def test_bf16_matches_reference(backend, feature_map):
    q, k, v = random_qkv(2, 130, 2, 32, 32, dtype=torch.bfloat16)
    assert_matches_reference(backend, q, k, v, tol=1e-2, feature_map=feature_map)


def test_clamp_is_active_and_matches_reference(feature_map):
    """Large raw q and k push the conserved source past a small clamp; still exact.

    Seeded, so that a failure can be replayed."""
    q, k, v = random_qkv(1, 90, 2, 8, 8, seed=90, scale=4.0)
    kw = {"clamp": 0.5, "eps": 1e-3, "feature_map": feature_map}
    assert_matches_reference("chunked", q, k, v, tol=1e-4, **kw)
    assert_matches_reference("parallel", q, k, v, tol=1e-4, **kw)


@pytest.mark.parametrize("backend", SEQUENCE_BACKENDS)
def test_gradcheck_float64(backend, feature_map):
    q, k, v = random_qkv(1, 6, 2, 3, 2, dtype=torch.float64)
    kw = {"backend": backend, "feature_map": feature_map}
    assert torch.autograd.gradcheck(lambda *x: flow_attention(*x, **kw), (q, k, v))


def test_gradcheck_through_an_initial_state(feature_map):
    """Gradients reach the carried prefix sums too (chunked and naive backends)."""
    q, k, v = random_qkv(2, 5, 2, 3, 2, dtype=torch.float64)
    _, prefix = flow_attention(
        *random_qkv(2, 4, 2, 3, 2, dtype=torch.float64, seed=1),
        feature_map=feature_map,
        return_state=True,
    )
    sums = list(prefix.tensors().values())[:-1]  # all but the integer position
    carried = [t.detach().requires_grad_() for t in sums]

    for backend in SEQUENCE_BACKENDS:

        def run(q, k, v, *sums, backend=backend):
            state = FlowAttentionState(*sums, position=prefix.position)
            return flow_attention(
                q, k, v, backend=backend, feature_map=feature_map, initial_state=state
            )

        assert torch.autograd.gradcheck(run, (q, k, v, *carried))


def test_gradcheck_recurrent_and_varlen(feature_map):
    q, k, v = random_qkv(1, 7, 1, 3, 2, dtype=torch.float64)
    cu, kw = torch.tensor([0, 3, 7]), {"feature_map": feature_map}
    assert torch.autograd.gradcheck(lambda *x: flow_attention(*x, cu_seqlens=cu, **kw), (q, k, v))
    assert torch.autograd.gradcheck(lambda *x: run_backend("recurrent", *x, **kw), (q, k, v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_causal(backend, feature_map):
    L, p = 70, 41
    q, k, v = random_qkv(2, L, 2, 8, 8)
    out = run_backend(backend, q, k, v, feature_map=feature_map).detach()
    q2, k2, v2 = (x.detach().clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, p:] = torch.randn_like(x[:, p:])
    out2 = run_backend(backend, q2, k2, v2, feature_map=feature_map).detach()
    torch.testing.assert_close(out2[:, :p], out[:, :p], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(out2[:, p:], out[:, p:])


@pytest.mark.parametrize("backend", SEQUENCE_BACKENDS)
def test_packed_sequences_equal_separate_runs(backend, feature_map):
    lengths = [1, 70, 5, 130]
    kw = {"backend": backend, "feature_map": feature_map, "return_state": True}
    seqs = [random_qkv(1, n, 2, 8, 4, seed=i) for i, n in enumerate(lengths)]
    packed = [torch.cat(xs, dim=1).detach().requires_grad_() for xs in zip(*seqs, strict=True)]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    out, state = flow_attention(*packed, cu_seqlens=cu, **kw)
    layout = PackedSequences.from_offsets(cu, cu[-1].item())  # built once, for many layers
    again, _ = flow_attention(*packed, cu_seqlens=layout, **kw)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, packed, dout)
    single_grads = []
    for i, (q, k, v) in enumerate(seqs):
        lo, hi = cu[i], cu[i + 1]
        o, s = flow_attention(q, k, v, **kw)
        torch.testing.assert_close(out[:, lo:hi], o, rtol=1e-5, atol=1e-6)
        single_grads.append(torch.autograd.grad(o, (q, k, v), dout[:, lo:hi]))
        for name, t in s.tensors().items():
            torch.testing.assert_close(getattr(state, name)[i], t[0], rtol=1e-5, atol=1e-5)
    # as a whole: dq, dk of the length-1 sequence are small differences of larger terms
    for packed_grad, *parts in zip(grads, *single_grads, strict=True):
        assert relative_error(packed_grad, torch.cat(parts, 1)) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_right_padded_rows_equal_separate_runs(backend, feature_map):
    lengths, L = [9, 40, 23], 40
    q, k, v = random_qkv(3, L, 2, 8, 4)
    out = run_backend(backend, q, k, v, feature_map=feature_map)
    for i, n in enumerate(lengths):
        rows = (q[i : i + 1, :n], k[i : i + 1, :n], v[i : i + 1, :n])
        alone = run_backend(backend, *rows, feature_map=feature_map)
        torch.testing.assert_close(out[i : i + 1, :n], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block_size", [7, None])
def test_parallel_padded_rows_and_final_state_equal_separate_runs(block_size, feature_map):
    """`lengths` (what packed input becomes) with one block and with several."""
    lengths, options = torch.tensor([30, 9, 23]), FlowOptions(feature_map)
    q, k, v = (x.detach().transpose(1, 2) for x in random_qkv(3, 30, 2, 8, 4, seed=3))
    batch = FlowBatch(q, k, v, lengths=lengths)
    out, state = parallel_flow_attention(batch, options, block_size=block_size)
    for i, n in enumerate(lengths.tolist()):
        alone, alone_state = chunked_flow_attention(
            FlowBatch(q[i : i + 1, :, :n], k[i : i + 1, :, :n], v[i : i + 1, :, :n]), options
        )
        torch.testing.assert_close(out[i : i + 1, :, :n], alone, rtol=1e-5, atol=1e-6)
        for name, t in alone_state.tensors().items():
            torch.testing.assert_close(getattr(state, name)[i], t[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", SEQUENCE_BACKENDS)
def test_state_continues_a_prefix(backend, feature_map):
    """return_state after a prefix, then initial_state or steps, equals one full run."""
    L, p = 100, 37
    q, k, v = (x.detach() for x in random_qkv(2, L, 2, 8, 4, dtype=torch.float64))
    kw = {"feature_map": feature_map}
    full = reference_flow_attention(q, k, v, **kw)
    kw["backend"] = backend
    head, state = flow_attention(q[:, :p], k[:, :p], v[:, :p], return_state=True, **kw)
    assert state.position.tolist() == [p, p]
    tail = flow_attention(q[:, p:], k[:, p:], v[:, p:], initial_state=state, **kw)
    assert relative_error(torch.cat([head, tail], 1), full) < 1e-10
    tail, _ = flow_attention(
        q[:, p:], k[:, p:], v[:, p:], initial_state=state, return_state=True, **kw
    )
    assert relative_error(torch.cat([head, tail], 1), full) < 1e-10
    outs = []
    for t in range(p, L):
        out, state = flow_attention_step(q[:, t], k[:, t], v[:, t], state, feature_map=feature_map)
        outs.append(out)
    assert relative_error(torch.stack(outs, 1), full[:, p:]) < 1e-10


def test_state_reset_restarts_selected_rows():
    q, k, v = (x.detach() for x in random_qkv(2, 12, 1, 4, 3))
    kw = {"feature_map": "sigmoid"}
    _, state = flow_attention(q, k, v, return_state=True, **kw)
    state = state.reset(torch.tensor([True, False]))
    assert state.position.tolist() == [0, 12]
    out, _ = flow_attention_step(q[:, 0], k[:, 0], v[:, 0], state, **kw)
    fresh, _ = flow_attention_step(q[:1, 0], k[:1, 0], v[:1, 0], None, **kw)
    torch.testing.assert_close(out[:1], fresh)
    assert not torch.allclose(out[1:], fresh)


@pytest.mark.parametrize("backend", ["chunked", "parallel"])
def test_long_sequence_stays_finite(backend, feature_map):
    q, k, v = random_qkv(1, 32768, 2, 4, 4, scale=3.0)
    kw = {"feature_map": feature_map}
    out = flow_attention(q, k, v, backend=backend, **kw)
    out.square().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    # the tail of a long sequence still matches the spec's recurrent form
    _, state = flow_attention(q[:, :-8], k[:, :-8], v[:, :-8], return_state=True, **kw)
    for i, t in enumerate(range(32760, 32768)):
        step, state = flow_attention_step(q[:, t], k[:, t], v[:, t], state, **kw)
        assert relative_error(step, out[:, t]) < 1e-3, i


def test_state_zeros_matches_none():
    q, k, v = (x.detach() for x in random_qkv(3, 1, 2, 4, 5))
    kw = {"feature_map": "sigmoid"}
    a, _ = flow_attention_step(q[:, 0], k[:, 0], v[:, 0], None, **kw)
    zeros = FlowAttentionState.zeros(3, 2, 4, 5)
    b, _ = flow_attention_step(q[:, 0], k[:, 0], v[:, 0], zeros, **kw)
    torch.testing.assert_close(a, b)


BAD_INPUTS = {
    "rank": (lambda q, k, v: (q[0], k[0], v[0]), {}, "shape"),
    "qk shapes": (lambda q, k, v: (q, k[..., :3], v), {}, "same shape"),
    "v shape": (lambda q, k, v: (q, k, v[:, :5]), {}, "v must match"),
    "dtype": (lambda q, k, v: (q, k.double(), v), {}, "dtype"),
    "int dtype": (lambda q, k, v: (q.long(), k.long(), v.long()), {}, "dtype"),
    "backend": (lambda q, k, v: (q, k, v), {"backend": "flash"}, "backend"),
    "eps": (lambda q, k, v: (q, k, v), {"eps": 0.0}, "eps"),
    "feature map": (lambda q, k, v: (q, k, v), {"feature_map": "tanh"}, "feature_map='tanh'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_clear_error(case):
    change, kwargs, message = BAD_INPUTS[case]
    q, k, v = (x.detach() for x in random_qkv(1, 8, 2, 4, 4))
    with pytest.raises(ValueError, match=message):
        flow_attention(*change(q, k, v), **kwargs)


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ([0, 3, 5], "from 0 to the packed length 8"),
        ([0, 5, 3, 8], "strictly increasing"),
        ([1, 8], "from 0"),
        ([8], "at least two"),
    ],
)
def test_bad_cu_seqlens(offsets, message):
    q, k, v = (x.detach() for x in random_qkv(1, 8, 2, 4, 4))
    with pytest.raises(ValueError, match=message):
        flow_attention(q, k, v, cu_seqlens=torch.tensor(offsets))


def test_packed_layout_must_match_the_tokens():
    q, k, v = (x.detach() for x in random_qkv(1, 8, 2, 4, 4))
    layout = PackedSequences.from_offsets(torch.tensor([0, 3, 9]), 9)
    with pytest.raises(ValueError, match="describe 9 tokens but q holds 8"):
        flow_attention(q, k, v, cu_seqlens=layout)


def test_cu_seqlens_needs_packed_batch():
    q, k, v = (x.detach() for x in random_qkv(2, 8, 2, 4, 4))
    with pytest.raises(ValueError, match="batch 1"):
        flow_attention(q, k, v, cu_seqlens=torch.tensor([0, 8]))


def test_step_rejects_mismatched_state():
    q, k, v = (x.detach() for x in random_qkv(2, 1, 2, 4, 4))
    state = FlowAttentionState.zeros(3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"state\.kv"):
        flow_attention_step(q[:, 0], k[:, 0], v[:, 0], state)
    with pytest.raises(ValueError, match="shape"):
        flow_attention_step(q, k, v)


def test_step_rejects_an_unknown_feature_map():
    q, k, v = (x.detach() for x in random_qkv(2, 1, 2, 4, 4))
    with pytest.raises(ValueError, match="expected one of sigmoid, relu"):
        flow_attention_step(q[:, 0], k[:, 0], v[:, 0], feature_map="elu")


MIXED = ("relu", "sigmoid", "sigmoid", "relu")  # runs of heads: relu, sigmoid x 2, relu


@pytest.mark.parametrize("backend", BACKENDS)
def test_heads_of_different_maps_match_the_reference_head_by_head(backend):
    q, k, v = random_qkv(2, 70, 4, 8, 8, seed=12)
    dout = torch.randn(2, 70, 4, 8, dtype=torch.float64)
    ref, ref_grads = outputs_and_grads(lambda *x: reference_by_heads(*x, MIXED), q, k, v, dout)
    out, grads = outputs_and_grads(
        lambda *x: run_backend(backend, *x, feature_map=MIXED), q, k, v, dout.float()
    )
    assert relative_error(out, ref) < 1e-4
    for g, rg in zip(grads, ref_grads, strict=True):
        assert relative_error(g, rg) < 1e-4


@pytest.mark.parametrize("backend", SEQUENCE_BACKENDS)
def test_heads_of_different_maps_continue_a_prefix(backend):
    L, p = 60, 23
    q, k, v = (x.detach() for x in random_qkv(2, L, 4, 8, 4, dtype=torch.float64, seed=13))
    full = reference_by_heads(q, k, v, MIXED)
    kw = {"backend": backend, "feature_map": MIXED}
    head, state = flow_attention(q[:, :p], k[:, :p], v[:, :p], return_state=True, **kw)
    tail = flow_attention(q[:, p:], k[:, p:], v[:, p:], initial_state=state, **kw)
    assert relative_error(torch.cat([head, tail], 1), full) < 1e-10
