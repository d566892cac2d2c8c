"""The fused Triton backend against the float64 reference and the chunked backend.

Without CUDA the kernels run under the Triton interpreter (TRITON_INTERPRET=1, set here
before the kernel module is first imported) at small shapes and chunks of 16 tokens.
Tests marked `cuda` cover bf16 and large shapes on a GPU.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")
kernels = pytest.importorskip("flowrl.ops.flow_attention.triton_kernels")
if not torch.cuda.is_available() and not kernels.INTERPRET:
    pytest.skip(
        "no CUDA and the kernels were compiled without TRITON_INTERPRET=1", allow_module_level=True
    )

from triton.runtime.autotuner import Autotuner  # noqa: E402

from flowrl.ops import FlowAttentionState, flow_attention  # noqa: E402
from flowrl.ops.flow_attention import FlowOptions, triton_chunk_kernels  # noqa: E402
from flowrl.ops.flow_attention.api import resolve_backend  # noqa: E402
from flowrl.ops.flow_attention.chunked_torch import chunked_flow_attention  # noqa: E402
from flowrl.ops.flow_attention.protocol import FlowBatch  # noqa: E402
from flowrl.ops.flow_attention.triton import _blocks, triton_flow_attention  # noqa: E402
from tests.ops import flow_reference  # noqa: E402
from tests.ops.flow_reference import reference_flow_attention, relative_error  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHUNK = 16 if kernels.INTERPRET else 64  # the interpreter's chunk: lengths below straddle it
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def random_qkv(*args, **kwargs):
    """`tests.ops.flow_reference.random_qkv` on this module's device."""
    return flow_reference.random_qkv(*args, device=DEVICE, **kwargs)


def grads(out, inputs, dout):
    return torch.autograd.grad(out, inputs, dout.to(out.dtype))


def assert_matches_reference(q, k, v, tol, **kw):
    """Output and dq, dk, dv of the triton backend within `tol` of the float64 reference."""
    ref = reference_flow_attention(*(x.cpu() for x in (q, k, v)), **kw)
    dout = torch.randn_like(ref)
    ref_grads = grads(ref, (q, k, v), dout)
    out = flow_attention(q, k, v, backend="triton", **kw)
    assert out.dtype == q.dtype
    assert relative_error(out.cpu(), ref) < tol, f"out: {relative_error(out.cpu(), ref):.2e}"
    for name, g, rg in zip("qkv", grads(out, (q, k, v), dout.to(DEVICE)), ref_grads, strict=True):
        err = relative_error(g.cpu(), rg.cpu())
        assert err < tol, f"d{name}: {err:.2e}"


@pytest.mark.parametrize("L", [5, CHUNK, 2 * CHUNK + 7])
@pytest.mark.parametrize(("d", "m"), [(16, 32), (32, 16)])
def test_fp32_matches_reference(L, d, m, feature_map):
    q, k, v = random_qkv(2, L, 2, d, m, seed=L + d)
    assert_matches_reference(q, k, v, tol=1e-4, feature_map=feature_map)


@pytest.fixture
def tf32_matmuls():
    """PyTorch's setting that lets fp32 matmuls run in TF32, on for one test."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize(
    ("dtype", "precision"),
    [(torch.float32, "ieee"), (torch.float16, "tf32"), (torch.bfloat16, "tf32")],
)
def test_matmul_precision_by_default(dtype, precision):
    q = torch.empty(1, 1, 1, 16, dtype=dtype)
    assert _blocks(q, q, "sigmoid")["PRECISION"] == precision


def test_fp32_in_tf32_matches_reference(feature_map, tf32_matmuls):
    """With TF32 allowed, fp32 inputs multiply on TF32 tensor cores (on a GPU; the
    interpreter rounds nothing) and stay within TF32's error of the reference."""
    q, k, v = random_qkv(2, 2 * CHUNK + 7, 2, 32, 32, seed=5)
    assert _blocks(q, v, feature_map)["PRECISION"] == "tf32"
    assert_matches_reference(q, k, v, tol=5e-3, feature_map=feature_map)


def test_autotune_keys_name_the_matmul_precision():
    """The precision no longer follows from the dtype, so a config tuned for IEEE fp32 is not
    reused for TF32 (the autotuner keys on the dtypes and the names in `key` only)."""
    tuned = [
        x
        for module in (kernels, triton_chunk_kernels)
        for x in vars(module).values()
        if isinstance(x, Autotuner) and "PRECISION" in x.arg_names
    ]
    assert len(tuned) >= 10
    assert all("PRECISION" in x.keys for x in tuned), [x.fn.__name__ for x in tuned]


def test_tf32_setting_of_torch_2_9_is_read():
    """`torch.backends.cuda.matmul.fp32_precision`, after which torch refuses to read the
    legacy `allow_tf32`; in a process of its own, since the setting is global."""
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has no fp32_precision")
    code = (
        "import torch\n"
        "from flowrl.ops.flow_attention.triton import fp32_matmuls_use_tf32 as tf32\n"
        "before = tf32()\n"
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "print(before, tf32())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("L", [9, 2 * CHUNK + 3])
def test_fp16_matches_reference(L, feature_map):
    q, k, v = random_qkv(2, L, 2, 32, 32, dtype=torch.float16, seed=L)
    assert_matches_reference(q, k, v, tol=1e-2, feature_map=feature_map)


def test_head_dims_not_powers_of_two(feature_map):
    q, k, v = random_qkv(1, CHUNK + 1, 2, 20, 24, seed=3)
    assert_matches_reference(q, k, v, tol=1e-4, feature_map=feature_map)


def test_clamp_is_active_and_matches_reference(feature_map):
    """Large raw q, k push the conserved source past a small clamp: its gradient is cut."""
    q, k, v = random_qkv(1, 2 * CHUNK + 5, 2, 16, 16, scale=4.0, seed=4)
    assert_matches_reference(q, k, v, tol=1e-4, clamp=0.5, eps=1e-3, feature_map=feature_map)


def test_length_one(feature_map):
    """At L = 1 the sink is 1 up to eps * O_1, so dq and dk are small differences (below 1e-4
    for sigmoid features, about 1e-3 for ReLU ones, whose <Q_1, K_1> can be near 0): checked
    in absolute terms, against dv of order 1."""
    q, k, v = random_qkv(3, 1, 2, 16, 16, seed=5)
    ref = reference_flow_attention(*(x.cpu() for x in (q, k, v)), feature_map=feature_map)
    dout = torch.randn_like(ref)
    out = flow_attention(q, k, v, backend="triton", feature_map=feature_map)
    assert relative_error(out.cpu(), ref) < 1e-5
    got, want = grads(out, (q, k, v), dout.to(DEVICE)), grads(ref, (q, k, v), dout)
    assert relative_error(got[2].cpu(), want[2].cpu()) < 1e-5
    for g, rg in zip(got[:2], want[:2], strict=True):
        assert (g.cpu() - rg.cpu()).abs().max() < 1e-5


def test_packed_sequences_match_reference(feature_map):
    """cu_seqlens through the public API: each sequence as if alone, gradients included."""
    lengths = [1, CHUNK + 3, 4, 2 * CHUNK]
    seqs = [random_qkv(1, n, 2, 16, 16, seed=10 + i) for i, n in enumerate(lengths)]
    packed = [torch.cat(xs, 1).detach().requires_grad_() for xs in zip(*seqs, strict=True)]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=DEVICE)
    kw = {"cu_seqlens": cu, "return_state": True, "feature_map": feature_map}
    out, state = flow_attention(*packed, backend="triton", **kw)
    dout = torch.randn_like(out)
    packed_grads = grads(out, packed, dout)
    _, chunked_state = flow_attention(*(x.detach() for x in packed), backend="chunked", **kw)
    for name, t in chunked_state.tensors().items():
        torch.testing.assert_close(getattr(state, name), t, rtol=1e-5, atol=1e-5)
    refs = [
        reference_flow_attention(*(x.cpu() for x in xs), feature_map=feature_map) for xs in seqs
    ]
    assert relative_error(out.cpu(), torch.cat(refs, 1)) < 1e-4
    douts = dout.cpu().double().split(lengths, 1)
    ref_grads = [grads(r, xs, g) for r, xs, g in zip(refs, seqs, douts, strict=True)]
    for i, g in enumerate(packed_grads):  # as a whole: dq, dk of the L = 1 sequence are O(eps)
        rg = torch.cat([sequence_grads[i].cpu() for sequence_grads in ref_grads], 1)
        assert relative_error(g.cpu(), rg) < 1e-4


def test_right_padding_is_ignored(feature_map):
    """Garbage after each row's length changes no real output, gradient or final state."""
    lengths = torch.tensor([3, 2 * CHUNK + 1, CHUNK], device=DEVICE)
    q, k, v = (x.detach().transpose(1, 2) for x in random_qkv(3, 2 * CHUNK + 1, 2, 16, 8, seed=6))
    valid = torch.arange(q.shape[2], device=DEVICE).view(-1, 1) < lengths.view(-1, 1, 1, 1)
    generator = torch.Generator(device=DEVICE).manual_seed(6)
    dout = torch.randn(v.shape, generator=generator, device=DEVICE) * valid
    results = []
    options = FlowOptions(feature_map, eps=1e-6, clamp=10.0)
    for fn, garbage in ((triton_flow_attention, 1e3), (chunked_flow_attention, 0.0)):
        xs = [torch.where(valid, x, garbage).requires_grad_() for x in (q, k, v)]
        out, state = fn(FlowBatch(*xs, lengths=lengths), options)
        results.append((out * valid, grads(out, xs, dout), state))
    (out, g, state), (ref_out, ref_g, ref_state) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for a, b in zip(g, ref_g, strict=True):  # two fp32 sums: norm-wise, as the spec's tolerance
        assert relative_error(a, b) < 1e-4
    for name, t in ref_state.tensors().items():
        torch.testing.assert_close(getattr(state, name), t, rtol=1e-5, atol=1e-5)


def test_state_continues_a_prefix(feature_map):
    """return_state after a prefix, then initial_state, equals one full run; and the chunked
    backend from the same state gives the same output, gradients and final state."""
    L, p = 2 * CHUNK + 9, CHUNK + 5
    q, k, v = random_qkv(2, L, 2, 16, 8, seed=7)
    full = reference_flow_attention(*(x.detach().cpu() for x in (q, k, v)), feature_map=feature_map)
    kw = {"feature_map": feature_map}
    head, state = flow_attention(
        q[:, :p], k[:, :p], v[:, :p], backend="triton", return_state=True, **kw
    )
    assert state.position.tolist() == [p, p]
    assert all(t.dtype in (torch.float32, torch.long) for t in state.tensors().values())
    tails, tail_grads, finals = [], [], []
    rest = [x[:, p:].detach().requires_grad_() for x in (q, k, v)]
    dout = torch.randn_like(rest[2])
    for backend in ("triton", "chunked"):
        tail, final = flow_attention(
            *rest, backend=backend, initial_state=state, return_state=True, **kw
        )
        tails.append(tail)
        tail_grads.append(grads(tail, rest, dout))
        finals.append(final)
    assert relative_error(torch.cat([head, tails[0]], 1).cpu(), full) < 1e-4
    torch.testing.assert_close(tails[0], tails[1], rtol=1e-4, atol=1e-6)
    for a, b in zip(*tail_grads, strict=True):
        assert relative_error(a, b) < 1e-4
    for name, t in finals[1].tensors().items():
        torch.testing.assert_close(getattr(finals[0], name), t, rtol=1e-5, atol=1e-5)


def test_state_with_grad_is_rejected():
    q, k, v = (x.detach() for x in random_qkv(1, 4, 2, 16, 16))
    state = FlowAttentionState.zeros(1, 2, 16, 16, device=DEVICE)
    state.kv.requires_grad_()
    with pytest.raises(ValueError, match="initial_state"):
        flow_attention(q, k, v, backend="triton", initial_state=state)


@pytest.mark.cuda
@needs_cuda
def test_auto_picks_triton_on_cuda():
    assert resolve_backend("auto", torch.device("cuda")) == "triton"


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("L", [63, 1000])
def test_bf16_matches_reference(L, feature_map):
    q, k, v = random_qkv(2, L, 2, 64, 64, dtype=torch.bfloat16, seed=L)
    assert_matches_reference(q, k, v, tol=1e-2, feature_map=feature_map)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    ("dtype", "d", "m", "tol"),
    [
        (torch.float32, 128, 128, 1e-4),
        (torch.float32, 64, 32, 1e-4),
        (torch.float16, 64, 64, 1e-2),
        (torch.bfloat16, 64, 64, 1e-2),
        (torch.bfloat16, 128, 64, 1e-2),
    ],
)
def test_large_shapes_match_chunked_float64(dtype, d, m, tol, feature_map):
    """8K tokens against the chunked backend in float64 (the reference is O(L^2))."""
    q, k, v = random_qkv(2, 8192 + 17, 4, d, m, dtype=dtype, seed=d + m)
    exact = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = flow_attention(*exact, backend="chunked", feature_map=feature_map)
    dout = torch.randn_like(ref)
    out = flow_attention(q, k, v, backend="triton", feature_map=feature_map)
    assert relative_error(out, ref) < tol, f"out: {relative_error(out, ref):.2e}"
    pairs = zip("qkv", grads(out, (q, k, v), dout), grads(ref, exact, dout), strict=True)
    for name, g, rg in pairs:
        assert relative_error(g, rg) < tol, f"d{name}: {relative_error(g, rg):.2e}"


@pytest.mark.parametrize("case", ["silent keys", "silent queries", "silent first token"])
def test_relu_features_at_zero_match_reference(case):
    """ReLU features that are exactly 0 (tests/ops/test_relu_numerics.py): keys <= 0 for
    hundreds of tokens, query rows <= 0 (I_t of order 1 / eps), a first token at zero."""
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(1, 3 * CHUNK + 5, 2, 16, generator=g) for _ in range(3))
    if case == "silent keys":
        k[:, 10:-1] = -k[:, 10:-1].abs() - 0.1
    elif case == "silent queries":
        q[:, ::3] = -q[:, ::3].abs()
    else:
        q[:, 0], k[:, 0] = -q[:, 0].abs(), -k[:, 0].abs()
    q, k, v = (x.to(DEVICE).requires_grad_() for x in (q, k, v))
    assert_matches_reference(q, k, v, tol=1e-4, feature_map="relu")


def test_heads_of_different_maps_match_reference_and_continue_a_prefix():
    """One launch per run of heads that share a map; states split and joined by heads."""
    maps = ("relu", "sigmoid", "relu")
    L, p = 2 * CHUNK + 9, CHUNK + 5
    q, k, v = random_qkv(2, L, 3, 16, 16, seed=14)
    ref = flow_reference.reference_by_heads(*(x.cpu() for x in (q, k, v)), maps)
    dout = torch.randn_like(ref)
    out = flow_attention(q, k, v, backend="triton", feature_map=maps)
    assert relative_error(out.cpu(), ref) < 1e-4
    got, want = grads(out, (q, k, v), dout.to(DEVICE)), grads(ref, (q, k, v), dout)
    for g, rg in zip(got, want, strict=True):
        assert relative_error(g.cpu(), rg.cpu()) < 1e-4
    x = [t.detach() for t in (q, k, v)]
    kw = {"backend": "triton", "feature_map": maps}
    head, state = flow_attention(*(t[:, :p] for t in x), return_state=True, **kw)
    tail = flow_attention(*(t[:, p:] for t in x), initial_state=state, **kw)
    assert relative_error(torch.cat([head, tail], 1).cpu(), ref) < 1e-4


# The sequence-parallel schedule: many chunks, one row and head, wide heads, packed
# sequences on their own chunks, states carried over several calls, and its grids.


@pytest.mark.parametrize(
    ("B", "H", "L", "d", "m"), [(1, 1, 9 * CHUNK + 5, 16, 16), (2, 1, 4 * CHUNK + 1, 128, 32)]
)
def test_many_chunks_one_head_and_wide_heads_match_reference(B, H, L, d, m, feature_map):
    q, k, v = random_qkv(B, L, H, d, m, seed=L + d)
    assert_matches_reference(q, k, v, tol=1e-4, feature_map=feature_map)


def test_serial_schedule_matches_the_chunk_schedule(feature_map):
    """The kernels kept to compare against give the same outputs and gradients."""
    q, k, v = random_qkv(2, 3 * CHUNK + 2, 2, 16, 16, seed=21)
    dout = torch.randn_like(v)
    kw = {"feature_map": feature_map}
    chunk = flow_attention(q, k, v, backend="triton", **kw)
    serial = flow_attention(q, k, v, backend="triton-serial", **kw)
    torch.testing.assert_close(chunk, serial, rtol=1e-4, atol=1e-6)
    for a, b in zip(grads(chunk, (q, k, v), dout), grads(serial, (q, k, v), dout), strict=True):
        assert relative_error(a, b) < 1e-4


def test_packed_sequences_run_on_their_own_chunks(feature_map, monkeypatch):
    """Boundaries inside the interpreter's chunks: the grid holds each sequence's chunks
    and no padding to the longest; outputs, gradients and states match float64."""
    from flowrl.ops.flow_attention import triton_chunk_kernels as ck

    lengths = [CHUNK // 2 + 1, 3 * CHUNK + 5, 2, CHUNK - 3]
    grids = []
    kernel = ck._fwd_out_kernel

    class Recorder:
        def __getitem__(self, grid):
            grids.append(grid({"BLOCK_V": 16}) if callable(grid) else grid)
            return kernel[grid]

    monkeypatch.setattr(ck, "_fwd_out_kernel", Recorder())
    seqs = [random_qkv(1, n, 2, 16, 16, seed=30 + i) for i, n in enumerate(lengths)]
    packed = [torch.cat(xs, 1).detach().requires_grad_() for xs in zip(*seqs, strict=True)]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=DEVICE)
    out, state = flow_attention(
        *packed, backend="triton", cu_seqlens=cu, return_state=True, feature_map=feature_map
    )
    assert grids[0][:2] == (sum(-(-n // CHUNK) for n in lengths), 2)
    dout = torch.randn_like(out)
    got = grads(out, packed, dout)
    for i, (xs, n) in enumerate(zip(seqs, lengths, strict=True)):
        lo = sum(lengths[:i])
        ref = reference_flow_attention(*(x.cpu() for x in xs), feature_map=feature_map)
        assert relative_error(out[:, lo : lo + n].cpu(), ref) < 1e-4
        want = grads(ref, xs, dout[:, lo : lo + n].cpu().double())
        for g, rg in zip(got, want, strict=True):
            assert relative_error(g[:, lo : lo + n].cpu(), rg.cpu()) < 1e-4
        _, alone = flow_attention(
            *(x.detach() for x in xs), backend="chunked", return_state=True, feature_map=feature_map
        )
        for name, t in alone.tensors().items():
            torch.testing.assert_close(getattr(state, name)[i], t[0], rtol=1e-5, atol=1e-5)


def test_state_continues_over_several_calls(feature_map):
    """Three calls, each from the last one's state, equal one call over the whole sequence."""
    cuts = [0, 5, 2 * CHUNK + 1, 4 * CHUNK + 3]
    q, k, v = (x.detach() for x in random_qkv(2, cuts[-1], 2, 16, 16, seed=40))
    ref = reference_flow_attention(*(x.cpu() for x in (q, k, v)), feature_map=feature_map)
    state, outs = None, []
    for lo, hi in itertools.pairwise(cuts):
        out, state = flow_attention(
            q[:, lo:hi],
            k[:, lo:hi],
            v[:, lo:hi],
            backend="triton",
            initial_state=state,
            return_state=True,
            feature_map=feature_map,
        )
        outs.append(out)
    assert relative_error(torch.cat(outs, 1).cpu(), ref) < 1e-4
    _, whole = flow_attention(
        q, k, v, backend="chunked", return_state=True, feature_map=feature_map
    )
    for name, t in whole.tensors().items():
        torch.testing.assert_close(getattr(state, name), t, rtol=1e-5, atol=1e-5)


def test_one_row_and_head_spreads_over_programs(monkeypatch):
    """One (batch row, head) of 8 chunks runs every chunk kernel on 8 programs or more,
    forward and backward; with the GPU's chunk size L = 512 is 8 chunks or more."""
    from flowrl.ops.flow_attention import triton_chunk_kernels as ck

    names = [
        "_fwd_sums_kernel",
        "_fwd_flows_kernel",
        "_fwd_gates_kernel",
        "_fwd_out_kernel",
        "_bwd_out_kernel",
        "_bwd_gates_kernel",
        "_bwd_norms_kernel",
        "_bwd_qk_kernel",
    ]
    launched = {}

    class Recorder:
        def __init__(self, name):
            self.name, self.kernel = name, getattr(ck, name)

        def __getitem__(self, grid):
            grid = grid({"BLOCK_V": 16}) if callable(grid) else grid
            launched[self.name] = grid[0] * grid[1] * (grid[2] if len(grid) > 2 else 1)
            return self.kernel[grid]

    for name in names:
        monkeypatch.setattr(ck, name, Recorder(name))
    q, k, v = random_qkv(1, 8 * CHUNK, 1, 16, 16, seed=50)
    out = flow_attention(q, k, v, backend="triton", feature_map="sigmoid")
    grads(out, (q, k, v), torch.randn_like(out))
    assert set(launched) == set(names)
    assert all(programs >= 8 for programs in launched.values()), launched
    assert all(512 // ck.chunk_size(d, interpret=False) >= 8 for d in (16, 64, 128))
