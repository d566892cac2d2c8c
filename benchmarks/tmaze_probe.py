"""Where a T-Maze agent's memory fails: the probe (`flowrl.studies.tmaze_probe`) over the runs
of `flowrl bench memory` sweep folders, at corridors `--factors` times the trained length.

For each run and length it prints p_correct, the margin and the cue's share of each block's
output at the junction, and for the flow kinds the cue token's attention weight, source and
share of the competition's normaliser per block and head (docs/long-context.md). Writes
tmaze_probe.json to --out (default benchmarks/out/); committed probe results are kept under
benchmarks/results/ by hand (tmaze_probe*.json), so this script never writes there.

    python benchmarks/tmaze_probe.py sweeps/memory/passive-L30-flow-episode --factors 1 2 10
    python benchmarks/tmaze_probe.py SWEEP --factors 1 100 500 --eps 1e-9  # another eps
    python benchmarks/tmaze_probe.py --smoke --out /tmp/p   # untrained tiny agents, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from harness import add_common_args, publish, resolve_profile, trained_length, write_json

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.experiments.hostinfo import machine
from flowrl.studies.tmaze_probe import probe_sweep

JSON_NAME = "tmaze_probe.json"
PROFILES = {"full": {"factors": [1, 2, 5, 10]}, "smoke": {"factors": [1, 2]}}


def smoke_sweeps(out: Path) -> list[Path]:
    """Two sweep folders of one untrained tiny agent each (flow, flow-relu), L = 6."""
    folders = []
    for attention in ("flow", "flow-relu"):
        torch.manual_seed(0)
        cfg = DecisionTransformerConfig(
            state_dim=2, act_dim=4, discrete=True, embed_dim=16, n_layers=2, n_heads=2,
            attention=attention, context_mode="episode", context_len=7, max_timestep=32,
        )  # fmt: skip
        norm = Normalizer.from_arrays(np.zeros(2), np.ones(2), np.ones(4), 1.0, discrete=True)
        agent = DecisionTransformerAgent.from_parts(DecisionTransformer(cfg).eval(), norm)
        folder = out / "smoke-sweeps" / f"passive-L6-{attention}-episode"
        agent.save(folder / "runs" / "seed-0" / "checkpoints" / "last.pt")
        folders.append(folder)
    return folders


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders of the benchmark")
    parser.add_argument("--factors", type=int, nargs="+", help="corridor multiples (1 2 5 10)")
    parser.add_argument("--checkpoint", default="last.pt", help="file name in runs' checkpoints/")
    parser.add_argument(
        "--eps", type=float, help="the flow layers' eps for the probe (default: the agents' own)"
    )
    add_common_args(parser, [], quick=False)
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    if not args.sweeps and not args.smoke:
        parser.error("give sweep folders, or --smoke")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    sweeps = args.sweeps or smoke_sweeps(args.out)
    rows = []
    for sweep in sweeps:
        rows += probe_sweep(sweep, trained_length(sweep), args.factors, args.checkpoint, args.eps)
    for row in rows:
        share = " ".join(f"{s:.3f}" for s in row["cue_share"])
        print(f"{row['run']:<40} L={row['length']:<6} p_correct={row['p_correct']:.3f} "
              f"margin={row['margin']:+.3f}  cue_share by block: {share}")  # fmt: skip
        for cue in ("up", "down"):
            if cue in row:
                print(f"    {cue:>4} cue " + readings_line(row[cue]))
    config = {"profile": args.profile, "sweeps": [str(s) for s in sweeps],
              "factors": args.factors, "checkpoint": args.checkpoint, "eps": args.eps}  # fmt: skip
    payload = {"machine": info, "config": config, "rows": rows}
    publish(args, [write_json(args, JSON_NAME, payload)], {})
    return 0 if rows else 1


def readings_line(flow: dict) -> str:
    """The flow readings of one cue by block (|) and head."""
    return "  ".join(
        f"{key} " + " | ".join(" ".join(f"{x:.2f}" for x in block) for block in flow[key])
        for key in flow
    )


if __name__ == "__main__":
    sys.exit(main())
