"""Causal attention on a CUDA GPU: Flow-Attention (triton, chunked) against FlashAttention.

For each length: forward and forward+backward time (median of triton.testing.do_bench),
peak memory above the inputs, and achieved bandwidth, i.e. the spec's bytes floor
(docs/flow-attention.md, Cost: 4*B*H*L*d*bytes forward, 7*B*H*L*d*bytes more backward) over
the time, as a share of the device's measured copy bandwidth. FlashAttention is PyTorch's
scaled_dot_product_attention restricted to its flash kernel. Prints a table with the
issue's targets and writes JSON to benchmarks/results/attention_gpu_<device>.json.

    python benchmarks/attention_gpu.py                  # B=8 H=16 d=64 bf16, L = 1K .. 32K
    python benchmarks/attention_gpu.py --lengths 1024 4096 --backends triton flash
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("triton", "chunked", "flash")
MODES = ("fwd", "fwd+bwd")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FLOOR_UNITS = {"fwd": 4, "fwd+bwd": 4 + 7}  # multiples of B*H*L*d*bytes the spec gives


def copy_bandwidth() -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    from triton.testing import do_bench

    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / (ms * 1e-3)


def attention(backend: str) -> Callable:
    """(q, k, v) in (B, L, H, d) -> out (B, L, H, d)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    from flowrl.ops import flow_attention

    def flash(q, k, v):
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)

    if backend == "flash":
        return flash
    return lambda q, k, v: flow_attention(q, k, v, backend=backend)


def run_case(backend: str, L: int, mode: str, B: int, H: int, d: int, dtype) -> dict:
    """Time and peak memory of one case; the first call also autotunes the kernels."""
    from triton.testing import do_bench

    torch.manual_seed(0)
    grad = mode == "fwd+bwd"
    q, k, v = (
        torch.randn(B, L, H, d, device="cuda", dtype=dtype, requires_grad=grad) for _ in "qkv"
    )
    dout = torch.randn_like(q)
    attend = attention(backend)

    def once() -> None:
        if grad:
            attend(q, k, v).backward(dout)
        else:
            with torch.no_grad():
                attend(q, k, v)

    once()
    torch.cuda.synchronize()
    q.grad = k.grad = v.grad = None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    once()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    ms = do_bench(once, grad_to_none=[q, k, v] if grad else None, return_mode="median")
    return {"time_ms": ms, "peak_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024 * 2**i for i in range(6)])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--out", type=Path, help="default: results/attention_gpu_<device>.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("attention_gpu.py needs a CUDA GPU; on a CPU run benchmarks/attention.py instead")
    try:
        import triton
    except ImportError:
        sys.exit("attention_gpu.py needs the `triton` package")

    B, H, d, dtype = args.batch, args.heads, args.dim, DTYPES[args.dtype]
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    print(f"{device}: measured copy bandwidth {bandwidth / 1e9:.0f} GB/s")

    rows: list[dict] = []
    for L in args.lengths:
        for backend in args.backends:
            for mode in MODES:
                row = {"backend": backend, "L": L, "mode": mode}
                try:
                    row.update(run_case(backend, L, mode, B, H, d, dtype))
                except torch.cuda.OutOfMemoryError:
                    row["skipped"] = "out of memory"
                torch.cuda.empty_cache()
                if "time_ms" in row:
                    floor = FLOOR_UNITS[mode] * B * H * L * d * dtype.itemsize
                    row["floor_bytes"] = floor
                    row["bandwidth_share"] = floor / (row["time_ms"] * 1e-3) / bandwidth
                rows.append(row)
                print(json.dumps(row), flush=True)

    def get(backend: str, L: int, mode: str) -> dict:
        found = [r for r in rows if (r["backend"], r["L"], r["mode"]) == (backend, L, mode)]
        return found[0] if found else {}

    def ratio(num: dict, den: dict, key: str) -> str:
        if key not in num or key not in den:
            return "-"
        return f"{num[key] / den[key]:.2f}x"

    lines = [
        f"\n{device}, B={B} H={H} d={d} {args.dtype}; copy bandwidth {bandwidth / 1e9:.0f} GB/s",
        f"{'L':>6} {'mode':>8} | "
        + " ".join(f"{b + ' ms':>12} {b + ' MB':>11}" for b in args.backends)
        + " | flash/triton time  chunked/triton time  triton BW share  triton MB per 1K tokens",
    ]
    for L in args.lengths:
        for mode in MODES:
            cells = []
            for b in args.backends:
                r = get(b, L, mode)
                ok = "time_ms" in r
                cells.append(f"{r['time_ms']:12.3f} {r['peak_mb']:11.1f}" if ok else f"{'-':>24}")
            t = get("triton", L, mode)
            share = f"{t['bandwidth_share']:.0%}" if t.get("bandwidth_share") else "-"
            per_k = f"{t['peak_mb'] / (L / 1024):.1f}" if "peak_mb" in t else "-"
            lines.append(
                f"{L:>6} {mode:>8} | "
                + " ".join(cells)
                + f" | {ratio(get('flash', L, mode), t, 'time_ms'):>17}"
                + f" {ratio(get('chunked', L, mode), t, 'time_ms'):>20}"
                + f" {share:>16} {per_k:>24}"
            )
    lines.append(
        "targets: fwd+bwd flash/triton > 1 from 4K and >= 5 at 32K; fwd BW share >= 50% from 8K;"
        " triton MB per 1K tokens flat (memory linear in length)"
    )
    print("\n".join(lines))

    slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
    out = args.out or RESULTS / f"attention_gpu_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "device": device,
        "copy_bandwidth_bytes_per_s": bandwidth,
        "batch": B,
        "heads": H,
        "dim": d,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    out.write_text(json.dumps({"config": config, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
