"""Where a MiniGrid-Memory agent fails: the probe (`flowrl.studies.minigrid_probe`) over the runs
of `flowrl bench memory --task minigrid` sweep folders, where the way from the room to the
end is `--factors` times the trained one.

For each run and factor it prints the decision's margin on the oracle's path, the share of
episodes it gets right there, and how the agent's own episodes end: match, wrong pick after
seeing the room's object, wrong pick without seeing it, or timeout (docs/long-context.md).
Writes minigrid_probe.json to --out (default benchmarks/out/); committed probe results are
kept under benchmarks/results/ by hand, so this script never writes there.

    python benchmarks/minigrid_probe.py sweeps/memory/minigrid-L13-flow-relu-episode
    python benchmarks/minigrid_probe.py --smoke --out /tmp/p   # an untrained tiny agent
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
from flowrl.envs.minigrid_memory import N_ACTIONS, OBS_DIM
from flowrl.envs.minigrid_policies import LOOKS
from flowrl.experiments.hostinfo import machine
from flowrl.studies.minigrid_probe import probe_sweep

JSON_NAME = "minigrid_probe.json"
SEED = 20000  # the env seeds of `flowrl bench memory`'s evaluations start here
PROFILES = {
    "full": {"factors": [1, 2, 5, 10], "episodes": 50},
    "smoke": {"factors": [1, 2], "episodes": 2},
}


def smoke_sweep(out: Path) -> Path:
    """A sweep folder of one untrained tiny grid agent, size 7."""
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=OBS_DIM, act_dim=N_ACTIONS, discrete=True, embed_dim=16, n_layers=1,
        n_heads=1, attention="flow-relu", context_mode="episode", context_len=32,
        timestep_embedding="none", state_encoder="grid",
    )  # fmt: skip
    norm = Normalizer.from_arrays(
        np.zeros(OBS_DIM), np.ones(OBS_DIM), np.ones(N_ACTIONS), 1.0, discrete=True
    )
    agent = DecisionTransformerAgent.from_parts(DecisionTransformer(cfg).eval(), norm)
    folder = out / "smoke-sweeps" / "minigrid-L7-flow-relu-episode"
    agent.save(folder / "runs" / "seed-0" / "checkpoints" / "last.pt")
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders of the benchmark")
    parser.add_argument("--factors", type=int, nargs="+", help="hallway multiples (1 2 5 10)")
    parser.add_argument("--episodes", type=int, help="env seeds per run and factor (50)")
    parser.add_argument(
        "--look", choices=LOOKS, default="nearest",
        help="where the oracle looks at the room's object: nearest (minigrid-noisy's data) or "
        "up-close (minigrid-up-close-noisy's)",
    )  # fmt: skip
    add_common_args(parser, [], quick=False)
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    if not args.sweeps and not args.smoke:
        parser.error("give sweep folders, or --smoke")
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes}: expected at least 1")
    return args


def best_head(memory_weight: list[list[float]]) -> str:
    """Each block's largest memory weight over its heads, "/"-separated: a look-up head shows
    where a mean over heads would hide it; "closed" for a block whose heads read no key."""
    blocks = []
    for block in np.asarray(memory_weight, dtype=float):
        defined = block[np.isfinite(block)]
        blocks.append(f"{defined.max():.3f}" if defined.size else "closed")
    return " / ".join(blocks)


def finite_mean(values: list[list[float]]) -> str:
    """The mean of the finite values ("closed" where none is: no memory key to compare)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return f"{finite.mean():.2f}" if finite.size else "closed"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    sweeps = args.sweeps or [smoke_sweep(args.out)]
    seeds = range(SEED, SEED + args.episodes)
    rows = []
    for sweep in sweeps:
        for row in probe_sweep(sweep, trained_length(sweep), args.factors, seeds, args.look):
            print(f"{row['run']:<44} x{row['factor']:<3} S={row['size']:<5} "
                  f"margin={row['margin']:+6.2f} correct={row['correct']:.2f} ("
                  + " ".join(f"{k} {v:.2f}" for k, v in row["correct_by_object"].items())
                  + f")  "
                  f"match={row['match']} wrong seen={row['wrong_seen']} "
                  f"unseen={row['wrong_unseen']} timeout={row['timeout']}"
                  + (f"  memory weight {best_head(row['memory_weight'])}"
                     f" hallway keys {finite_mean(row['hallway_key_norm'])}"
                     f" silent keys {np.mean(row['silent_keys']):.2f}"
                     if "memory_weight" in row else ""), flush=True)  # fmt: skip
            rows.append(row)
    config = {"profile": args.profile, "sweeps": [str(s) for s in sweeps],
              "factors": args.factors, "episodes": args.episodes, "first_seed": SEED,
              "look": args.look}  # fmt: skip
    payload = {"machine": info, "config": config, "rows": rows}
    publish(args, [write_json(args, JSON_NAME, payload)], {})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
