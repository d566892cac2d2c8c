"""Where the parallel Flow-Attention backend should switch from one L x L block to blocks.

For each head shape (heads H, head dim d) and sequence length L, times forward + backward of
the parallel backend as one block, in blocks of 32 and of 64 tokens, the chunked backend,
and `auto` (what `flow_attention` picks on a CPU: `block_size_for`), side by side in one
process, one torch thread, at a fixed number of tokens per call (B x L ~ 19K, a T-Maze
batch of 64 corridors of 100 steps). Prints a table with each time as a ratio to `auto` and
writes JSON.

    python benchmarks/parallel_blocks.py            # about two minutes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hostinfo import cpu_name

from flowrl.ops.flow_attention.api import block_size_for, parallel_by_length
from flowrl.ops.flow_attention.chunked_torch import chunk_flow_attention
from flowrl.ops.flow_attention.parallel import parallel_flow_attention

RESULTS = Path(__file__).parent / "results"
SHAPES = ((1, 128), (1, 64), (1, 32), (4, 16))  # (heads, head dim)
LENGTHS = (60, 100, 150, 303, 600)
TOKENS = 64 * 303


def seconds(fn, q, k, v, repeats: int) -> float:
    """Mean seconds of `repeats` forward + backward calls, after one warm-up call."""
    fn(q, k, v)[0].sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(q, k, v)[0].sum().backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "parallel_blocks_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cases = {
        "one block": lambda q, k, v: parallel_flow_attention(q, k, v, block_size=None),
        "blocks of 32": lambda q, k, v: parallel_flow_attention(q, k, v, block_size=32),
        "blocks of 64": lambda q, k, v: parallel_flow_attention(q, k, v, block_size=64),
        "chunked": chunk_flow_attention,
        "auto": parallel_by_length,
    }
    rows = []
    for heads, dim in SHAPES:
        for length in LENGTHS:
            batch = max(1, TOKENS // length)
            q, k, v = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))
            times = {name: seconds(fn, q, k, v, args.repeats) for name, fn in cases.items()}
            auto = block_size_for(length, dim)
            rows.append({"heads": heads, "head_dim": dim, "length": length, "batch": batch,
                         "auto_block": auto, "seconds": times})  # fmt: skip
            ratios = "  ".join(f"{name} {t / times['auto']:.2f}" for name, t in times.items())
            print(f"H={heads} d={dim:<3} L={length:<4} B={batch:<4} auto={auto or 'one'}: "
                  f"auto {times['auto'] * 1e3:.0f} ms; x auto: {ratios}", flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu_name(), "threads": 1, "torch": torch.__version__}
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
