"""Compile a Triton kernel ahead of time for a CUDA arch and report its resources, on any machine.

`compile_report` lowers the kernel to PTX with an explicit `GPUTarget` (no CUDA driver, no
GPU), assembles that PTX with the `ptxas` Triton itself would use for the arch (for sm_90 and
up the wheel's `ptxas-blackwell`: its plain `ptxas` is older than the PTX Triton 3.9 writes)
and Triton's own flags plus `-v`, and reads registers, spills, stack and shared memory from
the log. Tensor-core instructions are counted in the PTX (static counts: a dot inside a loop
counts once). The process must have imported triton with TRITON_INTERPRET unset.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability
from triton.compiler import ASTSource
from triton.runtime.autotuner import Autotuner, Heuristics
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

WARP_SIZE = 32
# Tensor-core instructions by kind: Ampere-style, Hopper warpgroup, Blackwell.
MMA_PATTERNS = {
    "mma": re.compile(r"^\s*(?:@!?%\w+\s+)?mma\.sync\b", re.MULTILINE),
    "wgmma": re.compile(r"^\s*(?:@!?%\w+\s+)?wgmma\.mma_async\b", re.MULTILINE),
    "tcgen05": re.compile(r"^\s*(?:@!?%\w+\s+)?tcgen05\.mma\b", re.MULTILINE),
}
LOG_TAIL = 2000  # characters of a failing log kept in the error


class AotCompileError(RuntimeError):
    """Triton or ptxas could not compile a kernel; the message names it and quotes the log."""


def compile_report(
    fn: Any,
    signature: dict[str, str],
    constexprs: dict[str, object],
    *,
    num_warps: int,
    num_stages: int,
    arch: int = 90,
) -> dict[str, Any]:
    """Compile `fn` for CUDA `sm_{arch}` without a GPU and report what one program needs.

    `fn` is a `@triton.jit` function, or an autotuner / heuristics wrapping one (its `.fn`).
    `signature` gives the Triton type ("*bf16", "i32", "fp32", ...) of every argument that
    is not a constexpr; `constexprs` the value of every constexpr. Keys of the result:
    `registers` per thread, `spill_stores`, `spill_loads` and `spill_bytes` (their sum) and
    `stack_bytes` per thread as ptxas reports them, `shared_bytes` (what Triton allocates,
    dynamic), `ptxas_shared_bytes` (static shared memory ptxas saw, usually 0),
    `mma_instructions` (total) and `mma_by_kind`, and `kernel`, `gpu_name`, `ptxas`,
    `num_warps`, `num_stages`.
    """
    jit_fn = _jit_function(fn)
    name = jit_fn.__name__
    unknown = (signature.keys() | constexprs.keys()) - set(jit_fn.arg_names)
    missing = [a for a in jit_fn.arg_names if a not in signature and a not in constexprs]
    if unknown or missing:
        raise ValueError(
            f"{name}: signature/constexprs do not match its arguments "
            f"(missing {missing}, unknown {sorted(unknown)})"
        )
    full_signature = {a: "constexpr" if a in constexprs else signature[a] for a in jit_fn.arg_names}
    target = GPUTarget("cuda", arch, WARP_SIZE)
    try:
        compiled = triton.compile(
            ASTSource(jit_fn, full_signature, constexprs),
            target=target,
            options={"num_warps": num_warps, "num_stages": num_stages},
        )
    except Exception as err:
        raise AotCompileError(
            f"{name}: Triton failed to compile it for sm_{arch} "
            f"(num_warps={num_warps}, num_stages={num_stages}, {constexprs}): "
            f"{type(err).__name__}: {str(err)[-LOG_TAIL:]}"
        ) from err

    ptx = compiled.asm["ptx"]
    ptxas = get_ptxas(arch).path
    gpu_name = sm_arch_from_capability(arch)
    log = _ptxas_log(ptx, ptxas, gpu_name, compiled.metadata, name)
    usage = _parse_ptxas_log(log, compiled.metadata.name)
    mma = {kind: len(pattern.findall(ptx)) for kind, pattern in MMA_PATTERNS.items()}
    return {
        "kernel": name,
        "gpu_name": gpu_name,
        "ptxas": ptxas,
        "num_warps": num_warps,
        "num_stages": num_stages,
        **usage,
        "spill_bytes": usage["spill_stores"] + usage["spill_loads"],
        "shared_bytes": compiled.metadata.shared,
        "mma_instructions": sum(mma.values()),
        "mma_by_kind": mma,
    }


def _jit_function(fn: Any) -> JITFunction:
    """The `JITFunction` under autotuner / heuristics wrappers, if this process can compile it."""
    while isinstance(fn, (Autotuner, Heuristics)):
        fn = fn.fn
    if isinstance(fn, InterpretedFunction):
        raise TypeError(
            f"{fn.__name__} was decorated under TRITON_INTERPRET=1 and cannot be compiled: "
            "import its module with TRITON_INTERPRET unset"
        )
    if not isinstance(fn, JITFunction):
        raise TypeError(f"expected a @triton.jit function, got {type(fn).__name__}")
    if not isinstance(tl.standard.cdiv, JITFunction):
        raise RuntimeError(
            f"cannot compile {fn.__name__}: triton was imported under TRITON_INTERPRET=1 in this "
            "process, so its own standard library runs only in the interpreter; call "
            "compile_report from a process that imports triton with TRITON_INTERPRET unset"
        )
    return fn


def _ptxas_log(ptx: str, ptxas: str, gpu_name: str, metadata: Any, name: str) -> str:
    """Assemble `ptx` as Triton does (its flags, its extra options) with `-v`; return the log."""
    fmad = [] if metadata.enable_fp_fusion else ["--fmad=false"]
    extra = metadata.ptx_options.split() if metadata.ptx_options else []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{name}.ptx"
        src.write_text(ptx)
        cmd = [
            ptxas,
            "-lineinfo",
            *fmad,
            "-v",
            "--regAllocOptLevel=2",
            *extra,
            f"--gpu-name={gpu_name}",
            str(src),
            "-o",
            str(src.with_suffix(".cubin")),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    log = done.stderr + done.stdout
    if done.returncode != 0:
        raise AotCompileError(
            f"{name}: ptxas exited with {done.returncode} for {gpu_name}:\n{log[-LOG_TAIL:]}"
        )
    return log


def _parse_ptxas_log(log: str, entry: str) -> dict[str, int]:
    """Registers, spills, stack and static shared memory of kernel `entry` from a ptxas -v log."""
    block = log.split(f"Compiling entry function '{entry}'", 1)[-1]

    def number(pattern: str) -> int:
        found = re.search(pattern, block)
        return int(found.group(1)) if found else 0

    registers = number(r"Used (\d+) registers")
    if registers == 0:
        raise AotCompileError(f"{entry}: no register count in the ptxas log:\n{log[-LOG_TAIL:]}")
    return {
        "registers": registers,
        "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"),
        "stack_bytes": number(r"(\d+) bytes stack frame"),
        "ptxas_shared_bytes": number(r"(\d+) bytes smem"),
    }
