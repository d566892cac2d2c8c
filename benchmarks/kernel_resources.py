"""What each Flow-Attention Triton kernel needs of an H100/H200, found without a GPU.

Compiles every sequence-parallel kernel (`flowrl/ops/flow_attention/triton_chunk_kernels.py`)
in every config its autotuner may pick, for CUDA sm_90, ahead of time (Triton's compiler
and the ptxas in the triton wheel: `flowrl.ops.flow_attention.aot`), and reports per variant
the registers and spill bytes per thread, the shared memory and the tensor-core
instructions. Targets (issue 30): no spill bytes in bf16 at d = 64 and 128; tensor-core
instructions in bf16, fp16 and fp32 (TF32).

    python benchmarks/kernel_resources.py --out benchmarks/out/kernels   # every config
    python benchmarks/kernel_resources.py --smoke --out /tmp/kr          # bf16, d 64 and 128

fp32 inputs compile twice: "fp32" with IEEE matmuls (the default, exact to 1e-4) and
"fp32-tf32" (TF32 tensor cores: what the kernels run once PyTorch lets fp32 matmuls use
TF32, `torch.set_float32_matmul_precision("high")`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)  # compile for the GPU, whoever called us

from harness import add_common_args, resolve_profile, write_json

from flowrl.experiments.hostinfo import machine

INPUT = {
    "q_ptr",
    "k_ptr",
    "v_ptr",
    "o_ptr",
    "do_ptr",
    "dq_ptr",
    "dk_ptr",
    "dv_ptr",
    "x_ptr",
    "y_ptr",
}
TABLES = {"seqs", "chunk_seq"}
FLOATS = {"eps", "clamp"}
# dtype name -> (pointer type, BF16, PRECISION)
DTYPES = {
    "bf16": ("*bf16", True, "tf32"),
    "fp16": ("*fp16", False, "tf32"),
    "fp32": ("*fp32", False, "ieee"),
    "fp32-tf32": ("*fp32", False, "tf32"),
}
PROFILES = {
    "full": {"dtypes": list(DTYPES), "dims": [64, 128], "all_configs": True},
    "smoke": {"dtypes": ["bf16"], "dims": [64, 128], "all_configs": False},
}


def variants(ck) -> list[tuple[str, object, dict]]:
    """(name, autotuned kernel, constexprs beyond the shared ones) of every kernel launch."""
    return [
        ("fwd_sums", ck._fwd_sums_kernel, {}),
        ("fwd_flows", ck._fwd_flows_kernel, {}),
        ("fwd_gates", ck._fwd_gates_kernel, {}),
        ("state", ck._state_kernel, {"REVERSE": False, "HAS_START": True, "HAS_FINAL": True}),
        ("fwd_out", ck._fwd_out_kernel, {}),
        ("scan", ck._scan_kernel, {"REVERSE": False, "HAS_START": True, "HAS_FINAL": True}),
        (
            "state_adjoint",
            ck._state_kernel,
            {"REVERSE": True, "HAS_START": False, "HAS_FINAL": False},
        ),
        ("bwd_out", ck._bwd_out_kernel, {}),
        ("bwd_gates", ck._bwd_gates_kernel, {}),
        ("bwd_norms", ck._bwd_norms_kernel, {}),
        ("bwd_qk", ck._bwd_qk_kernel, {}),
    ]


def signature(fn, pointer: str) -> dict[str, str]:
    """Triton types of the non-constexpr arguments, by the kernels' naming."""
    types = {}
    for i, name in enumerate(fn.arg_names):
        if i in fn.constexprs:
            continue
        if name in INPUT:
            types[name] = pointer
        elif name in TABLES:
            types[name] = "*i64"
        elif name in FLOATS:
            types[name] = "fp32"
        elif name[0].isupper() or (name.startswith("s") and len(name) <= 4) or name == "lo":
            types[name] = "i32"  # sizes and strides
        else:
            types[name] = "*fp32"  # every buffer of the kernels is fp32
    return types


def rows(args: argparse.Namespace) -> list[dict]:
    from flowrl.ops.flow_attention import aot
    from flowrl.ops.flow_attention import triton_chunk_kernels as ck

    out = []
    for dtype in args.dtypes:
        pointer, bf16, precision = DTYPES[dtype]
        for d in args.dims:
            shared = {
                "BLOCK_C": ck.chunk_size(d),
                "BLOCK_D": d,
                "BLOCK_M": ck.value_block(d),
                "BF16": bf16,
                "PRECISION": precision,
                "FEATURE_MAP": "relu",
            }
            for name, tuned, extra in variants(ck):
                fn = tuned.fn
                wanted = {fn.arg_names[i] for i in fn.constexprs}
                configs = tuned.configs if args.all_configs else tuned.configs[:1]
                for config in configs:
                    constexprs = {**shared, **extra, **config.kwargs}
                    constexprs = {k: v for k, v in constexprs.items() if k in wanted}
                    row = {
                        "kernel": name,
                        "dtype": dtype,
                        "d": d,
                        "config": {
                            **config.kwargs,
                            "num_warps": config.num_warps,
                            "num_stages": config.num_stages,
                        },
                    }
                    t0 = time.perf_counter()
                    report = aot.compile_report(
                        fn,
                        signature(fn, pointer),
                        constexprs,
                        num_warps=config.num_warps,
                        num_stages=config.num_stages,
                    )
                    row["compile_s"] = round(time.perf_counter() - t0, 2)
                    keep = (
                        "registers",
                        "spill_bytes",
                        "stack_bytes",
                        "shared_bytes",
                        "mma_instructions",
                        "mma_by_kind",
                    )
                    row.update({k: report[k] for k in keep})
                    print(
                        f"{name:14} {dtype:9} d={d:<3} {row['config']}: "
                        f"{row['registers']} regs, {row['spill_bytes']} B spilled, "
                        f"{row['shared_bytes']} B shared, {row['mma_instructions']} mma",
                        flush=True,
                    )
                    out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES))
    parser.add_argument("--dims", type=int, nargs="+", help="head dims d (= m)")
    add_common_args(parser, [], quick=False)
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    args.all_configs = PROFILES[args.profile]["all_configs"]
    found = rows(args)
    spilled = [r for r in found if r["spill_bytes"] and r["dtype"] == "bf16"]
    no_mma = sorted(
        {
            r["dtype"]
            for r in found
            if r["mma_instructions"] == 0
            and r["kernel"] not in ("fwd_sums", "scan")
            and r["dtype"] != "fp32"
        }
    )
    summary = {
        "variants": len(found),
        "bf16_variants_that_spill": len(spilled),
        "dtypes_with_a_matmul_kernel_without_mma": no_mma,
    }
    print(summary)
    info = {**machine(torch_threads=1), "target": "sm_90 (ahead of time, no GPU)"}
    config = {
        "profile": args.profile,
        "dtypes": args.dtypes,
        "dims": args.dims,
        "all_configs": args.all_configs,
    }
    payload = {"machine": info, "config": config, "summary": summary, "rows": found}
    print(f"wrote {write_json(args, 'kernel_resources.json', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
