"""Where the parallel Flow-Attention backend should switch from one L x L block to blocks.

For each head shape (heads H, head dim d) and sequence length L, times forward + backward of
the parallel backend as one block, in blocks of 32 and of 64 tokens, the chunked backend,
and `auto` (what `flow_attention` picks on a CPU: `block_size_for`), side by side in one
process, one torch thread, at a fixed number of tokens per call (B x L ~ 19K, a T-Maze
batch of 64 corridors of 303 tokens). It tunes the op's own block-size rule, so it calls the
backend functions that `flow_attention` dispatches to. Prints a table with each time as a
ratio to `auto` and writes parallel_blocks_cpu.json to --out (default benchmarks/out/); the
committed benchmarks/results/parallel_blocks_cpu.json changes only with --update-committed.

    python benchmarks/parallel_blocks.py                    # about two minutes
    python benchmarks/parallel_blocks.py --smoke --out /tmp/p  # seconds
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from harness import RESULTS, add_common_args, publish, resolve_profile, write_json

from flowrl.experiments.hostinfo import machine
from flowrl.ops.flow_attention import FlowOptions
from flowrl.ops.flow_attention.api import block_size_for, parallel_by_length
from flowrl.ops.flow_attention.chunked_torch import chunked_flow_attention
from flowrl.ops.flow_attention.parallel import parallel_flow_attention
from flowrl.ops.flow_attention.protocol import FlowBatch

JSON_NAME = "parallel_blocks_cpu.json"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME}
PROFILES = {
    "full": {"shapes": [(1, 128), (1, 64), (1, 32), (4, 16)], "lengths": [60, 100, 150, 303, 600],
             "tokens": 64 * 303, "repeats": 3},
    "smoke": {"shapes": [(1, 16), (2, 8)], "lengths": [20, 70], "tokens": 140, "repeats": 1},
}  # fmt: skip
SIGMOID = FlowOptions("sigmoid")  # the features the committed timings were taken with
CASES = {
    "one block": lambda *x: parallel_flow_attention(FlowBatch(*x), SIGMOID, block_size=None),
    "blocks of 32": lambda *x: parallel_flow_attention(FlowBatch(*x), SIGMOID, block_size=32),
    "blocks of 64": lambda *x: parallel_flow_attention(FlowBatch(*x), SIGMOID, block_size=64),
    "chunked": lambda *x: chunked_flow_attention(FlowBatch(*x), SIGMOID),
    "auto": lambda *x: parallel_by_length(FlowBatch(*x), SIGMOID),
}


def seconds(fn, q, k, v, repeats: int) -> float:
    """Mean seconds of `repeats` forward + backward calls, after one warm-up call."""
    fn(q, k, v)[0].sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(q, k, v)[0].sum().backward()
    return (time.perf_counter() - start) / repeats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="timed calls a case (3)")
    parser.add_argument("--lengths", type=int, nargs="+", help="L (60 100 150 303 600)")
    add_common_args(parser, list(COMMITTED.values()), quick=False)
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    info = machine()
    rows, lines = [], []
    for heads, dim in args.shapes:
        for length in args.lengths:
            batch = max(1, args.tokens // length)
            q, k, v = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))
            times = {name: seconds(fn, q, k, v, args.repeats) for name, fn in CASES.items()}
            auto = block_size_for(length, dim)
            rows.append({"heads": heads, "head_dim": dim, "length": length, "batch": batch,
                         "auto_block": auto, "seconds": times})  # fmt: skip
            ratios = "  ".join(f"{name} {t / times['auto']:.2f}" for name, t in times.items())
            lines.append(f"H={heads} d={dim:<3} L={length:<4} B={batch:<4} auto={auto or 'one'}: "
                         f"auto {times['auto'] * 1e3:.0f} ms; x auto: {ratios}")  # fmt: skip
            print(lines[-1], flush=True)
    config = {
        "profile": args.profile,
        "tokens_per_call": args.tokens,
        "repeats": args.repeats,
        "shapes": args.shapes,
        "lengths": args.lengths,
        "timing": "forward + backward, mean of the repeats after one warm-up call",
    }
    payload = {"machine": info, "config": config, "rows": rows, "table": "\n".join(lines)}
    publish(args, [write_json(args, JSON_NAME, payload)], COMMITTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
