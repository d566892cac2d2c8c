"""Causal attention on the CPU: time and peak memory of each backend, side by side.

Backends: naive, chunked and parallel Flow-Attention, and softmax (PyTorch SDPA).

Every case (backend, length, forward or forward+backward) runs in its own subprocess so
that its peak resident memory (ru_maxrss above the inputs' baseline) is its own. Prints a
table with ratios to the chunked backend and writes attention_cpu.json to --out (default
benchmarks/out/); the committed benchmarks/results/attention_cpu.json changes only with
--update-committed.

    python benchmarks/attention.py                      # B=4 H=4 d=m=64, L = 256 .. 16K
    python benchmarks/attention.py --quick              # L = 256, 1024: a few seconds
    python benchmarks/attention.py --smoke --out /tmp/a  # every case at L = 64, seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from harness import RESULTS, add_common_args, publish, resolve_profile, write_json

from flowrl.experiments.hostinfo import machine, machine_line

JSON_NAME = "attention_cpu.json"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME}
PROFILES = {
    "full": {"lengths": [256, 1024, 4096, 16384], "batch": 4, "heads": 4, "dim": 64,
             "min_time": 1.0},
    "quick": {"lengths": [256, 1024], "batch": 2, "heads": 2, "dim": 64, "min_time": 0.2},
    "smoke": {"lengths": [64], "batch": 1, "heads": 2, "dim": 8, "min_time": 0.0},
}  # fmt: skip
BACKENDS = ("naive", "chunked", "parallel", "softmax")
MODES = ("fwd", "fwd+bwd")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_case(backend: str, L: int, mode: str, B: int, H: int, d: int, min_time: float) -> dict:
    """Runs in a worker process: one warm-up call measures peak memory, then timed repeats."""
    import torch
    import torch.nn.functional as F

    from flowrl.ops import flow_attention

    torch.manual_seed(0)
    grad = mode == "fwd+bwd"

    def inputs(length: int) -> list[torch.Tensor]:
        """q, k, v and the output gradient."""
        return [torch.randn(B, length, H, d, requires_grad=grad and i < 3) for i in range(4)]

    def once(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor) -> None:
        with torch.set_grad_enabled(grad):
            if backend == "softmax":
                qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
                out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)
            else:
                out = flow_attention(q, k, v, backend=backend, feature_map="sigmoid")
            if grad:
                q.grad = k.grad = v.grad = None
                out.backward(dout)

    once(*inputs(64))  # loads kernels and thread pools, so the peak below is the op's own
    q, k, v, dout = inputs(L)
    base = rss_bytes()
    once(q, k, v, dout)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < 50):
        start = time.perf_counter()
        once(q, k, v, dout)
        times.append(time.perf_counter() - start)
    return {"time_ms": 1e3 * statistics.median(times), "peak_mb": max(peak, 0) / 2**20}


def estimated_cost(backend: str, L: int, B: int, H: int, d: int) -> tuple[float, float]:
    """(bytes, flops) of the dominant term, to skip cases that cannot fit or finish."""
    if backend == "naive":
        return 3 * 4 * B * H * L * d * d, 4 * B * H * L * d * d
    if backend == "softmax":
        return 4 * 4 * B * H * L * (d + 64), 4 * B * H * L * L * d
    return 16 * 4 * B * H * L * d, B * H * L * (4 * 64 * d + 4 * d * d)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", help="L (256 1024 4096 16384)")
    parser.add_argument("--batch", type=int, help="B (4)")
    parser.add_argument("--heads", type=int, help="H (4)")
    parser.add_argument("--dim", type=int, help="d = m (64)")
    parser.add_argument("--memory-cap-gb", type=float, default=8.0)
    parser.add_argument("--max-gflop", type=float, default=400.0, help="skip longer cases")
    parser.add_argument("--min-time", type=float, help="seconds of repeats a case (1)")
    parser.add_argument(
        "--worker", nargs=3, metavar=("BACKEND", "L", "MODE"), help=argparse.SUPPRESS
    )
    add_common_args(parser, list(COMMITTED.values()))
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    B, H, d = args.batch, args.heads, args.dim
    if args.worker:
        backend, L, mode = args.worker[0], int(args.worker[1]), args.worker[2]
        print(json.dumps(run_case(backend, L, mode, B, H, d, args.min_time)))
        return 0

    from tqdm import tqdm

    cases = [(b, L, mode) for L in args.lengths for b in BACKENDS for mode in MODES]
    rows: list[dict] = []
    info = machine()
    for backend, L, mode in tqdm(cases, desc="attention cases", unit="case", disable=args.smoke):
        nbytes, flops = estimated_cost(backend, L, B, H, d)
        row = {"backend": backend, "L": L, "mode": mode}
        if (
            nbytes > args.memory_cap_gb * 2**30
            or flops * (3 if mode != "fwd" else 1) > args.max_gflop * 1e9
        ):
            rows.append({**row, "skipped": "over the memory or compute cap"})
            continue
        cmd = [sys.executable, __file__, "--worker", backend, str(L), mode]
        cmd += [
            "--batch",
            str(B),
            "--heads",
            str(H),
            "--dim",
            str(d),
            "--min-time",
            str(args.min_time),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            rows.append({**row, "error": done.stderr.strip()[-2000:]})
            continue
        rows.append({**row, **json.loads(done.stdout)})

    def find(backend: str, L: int, mode: str) -> dict:
        return next(r for r in rows if (r["backend"], r["L"], r["mode"]) == (backend, L, mode))

    header = f"{'L':>6} {'mode':>8} | " + " ".join(
        f"{b + ' ms':>12} {b + ' MB':>11}" for b in BACKENDS
    )
    header += " | " + " | ".join(f"{b}/chunk time  mem" for b in BACKENDS if b != "chunked")
    lines = [
        f"CPU attention, B={B} H={H} d=m={d} fp32; machine: {machine_line(info)}",
        header,
    ]
    for L in args.lengths:
        for mode in MODES:
            cells, base = [], find("chunked", L, mode)
            ratios = []
            for b in BACKENDS:
                r = find(b, L, mode)
                cells.append(
                    f"{r['time_ms']:12.1f} {r['peak_mb']:11.1f}"
                    if "time_ms" in r
                    else f"{'-':>12} {'-':>11}"
                )
                if b != "chunked":
                    ok = "time_ms" in r and "time_ms" in base
                    if ok:
                        time_ratio = r["time_ms"] / base["time_ms"]
                        mem_ratio = r["peak_mb"] / max(base["peak_mb"], 1e-3)
                        ratios.append(f"{time_ratio:10.1f}x {mem_ratio:5.1f}x")
                    else:
                        ratios.append(f"{'-':>11} {'-':>6}")
            lines.append(f"{L:>6} {mode:>8} | " + " ".join(cells) + " | " + "       ".join(ratios))
    text = "\n".join(lines)
    print(text)
    config = {"profile": args.profile, "batch": B, "heads": H, "dim": d, "dtype": "fp32",
              "min_time_s": args.min_time}  # fmt: skip
    payload = {"machine": info, "config": config, "results": rows, "table": text}
    publish(args, [write_json(args, JSON_NAME, payload)], COMMITTED)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
