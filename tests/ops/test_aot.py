"""`compile_report`: Triton kernels compiled for sm_90 on a machine without a GPU.

The compiling runs in a child process with TRITON_INTERPRET unset: test_triton sets it before
triton is first imported, and a triton imported that way cannot compile for a GPU, while
importing triton here first would leave test_triton's interpreter with compiled-only builtins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.timeouts import scaled

REPO = Path(__file__).resolve().parents[2]
CHILD = textwrap.dedent(
    """
    import json

    import triton
    import triton.language as tl

    from flowrl.ops.flow_attention.aot import compile_report


    @triton.jit
    def dot(a_ptr, b_ptr, c_ptr, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tile = offs[:, None] * BLOCK + offs[None, :]
        c = tl.dot(tl.load(a_ptr + tile), tl.load(b_ptr + tile), input_precision=PRECISION)
        tl.store(c_ptr + tile, c)


    reports = {
        dtype: compile_report(
            dot,
            {"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "c_ptr": "*fp32"},
            {"BLOCK": 64, "PRECISION": precision},
            num_warps=4,
            num_stages=2,
        )
        for dtype, precision in (("bf16", "tf32"), ("fp32", "ieee"))
    }
    print(json.dumps(reports))
    """
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    """compile_report of a 64x64x64 dot in bf16 and in fp32 with input_precision="ieee"."""
    nvidia = pytest.importorskip("triton.backends.nvidia.compiler")
    try:
        nvidia.get_ptxas(90)
    except RuntimeError:
        pytest.skip("triton has no bundled ptxas")
    tmp = tmp_path_factory.mktemp("aot")
    script = tmp / "dot_kernel.py"  # a file: triton.jit reads the kernel's source
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env |= {"TRITON_CACHE_DIR": str(tmp / "cache"), "TRITON_DEFAULT_FP_FUSION": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=scaled(120)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_bf16_dot_uses_tensor_cores_without_spilling(reports):
    out = reports["bf16"]
    assert out["registers"] > 0
    assert out["spill_bytes"] == 0
    assert out["mma_instructions"] > 0
    assert out["mma_instructions"] == sum(out["mma_by_kind"].values())
    assert out["gpu_name"] == "sm_90a"
    assert (out["num_warps"], out["num_stages"]) == (4, 2)


def test_fp32_ieee_dot_has_no_tensor_cores(reports):
    out = reports["fp32"]
    assert out["registers"] > 0
    assert out["mma_instructions"] == 0


def _plain(x_ptr):
    """A kernel body for the interpreter."""


def test_interpreted_kernel_is_refused():
    pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction

    from flowrl.ops.flow_attention.aot import compile_report

    with pytest.raises(TypeError, match=r"_plain.*TRITON_INTERPRET"):
        compile_report(
            InterpretedFunction(_plain), {"x_ptr": "*fp32"}, {}, num_warps=1, num_stages=1
        )
