"""How far the acting state drifts in float32 over long episodes, and what float64 costs.

A T-Maze-sized agent (embed 64, 2 layers, 4 heads, `flow-relu` with the key gate and the
source clamp at 2: the memory benchmark's variant), randomly initialised, walks one
passive T-Maze episode through `RecurrentStack`: the cue, then the corridor's repeating
tokens. Part 1 compares the last block's output at the corridor's end with the attention
state in float32 and in float64 against the float64 evaluation (the model and its state in
float64), at episodes of `--lengths` steps: the relative error of each. Part 2 times one
acting step (three tokens) with each state dtype at batch 1 and 100, the two stacks
stepping in turn so that load from elsewhere falls on both alike.

Writes acting_precision.json to --out (default benchmarks/out/, untracked).

    python benchmarks/acting_precision.py                 # lengths to 100,000 steps, minutes
    python benchmarks/acting_precision.py --smoke --out /tmp/a   # seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from harness import add_common_args, publish, resolve_profile, write_json

from flowrl.agents import DecisionTransformer, DecisionTransformerConfig
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.experiments.hostinfo import machine, machine_line

JSON_NAME = "acting_precision.json"
PROFILES = {
    "full": {"lengths": [1_000, 10_000, 100_000], "batches": [1, 100], "reps": 2000},
    "smoke": {"lengths": [10, 30], "batches": [1, 3], "reps": 10},
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_model() -> DecisionTransformer:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=2, act_dim=4, discrete=True, embed_dim=64, n_layers=2, n_heads=4,
        attention="flow-relu", key_gate=True, attention_clamp=2.0, context_mode="episode",
        context_len=201, timestep_embedding="none",
    )  # fmt: skip
    return DecisionTransformer(cfg).eval()


def corridor_tokens(model: DecisionTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded (return, state, action) tokens of the cue step and of a corridor step,
    (3, E) each: target 1, the upper cue, then [0, 0] observations, always 'right'."""
    step = torch.zeros(1, dtype=torch.long)
    right = torch.tensor([[0.0, 1.0, 0.0, 0.0]])

    def embedded(obs: torch.Tensor) -> torch.Tensor:
        kinds = [("return", torch.ones(1)), ("state", obs.unsqueeze(0)), ("action", right)]
        return torch.cat([model.embed_tokens(kind, values, step) for kind, values in kinds])

    with torch.no_grad():
        return embedded(torch.tensor([0.0, 1.0])), embedded(torch.zeros(2))


@torch.inference_mode()
def walk(
    model: DecisionTransformer,
    state_dtype: torch.dtype,
    lengths: list[int],
    tokens: tuple[torch.Tensor, torch.Tensor],
) -> dict:
    """The last block's output after each of `lengths` steps of one episode (batch 1) of
    `tokens` (the cue step's, then the corridor's)."""
    dtype = next(model.parameters()).dtype
    cue, corridor = (x.to(dtype) for x in tokens)
    stack, outputs = RecurrentStack(model, 1, state_dtype=state_dtype), {}
    for step in range(1, max(lengths) + 1):
        for token in cue if step == 1 else corridor:
            hidden = stack.step(token.unsqueeze(0))
        if step in lengths:
            outputs[step] = hidden[0].double().clone()
    return outputs


def drift(lengths: list[int]) -> list[dict]:
    """Relative error of the float32 model's output, state in float32 and in float64,
    against the float64 model with a float64 state, per episode length."""
    model = make_model()
    tokens = corridor_tokens(model)
    exact = walk(make_model().double(), torch.float64, lengths, tokens)
    got = {name: walk(model, dtype, lengths, tokens) for name, dtype in DTYPES.items()}
    return [
        {
            "steps": n,
            "tokens": 3 * n,
            **{
                f"relative_error_{name}_state": float(
                    (got[name][n] - exact[n]).norm() / exact[n].norm()
                )
                for name in DTYPES
            },
        }
        for n in lengths
    ]


@torch.inference_mode()
def step_ms(batch: int, reps: int) -> dict[str, float]:
    """Median ms of one acting step (three tokens) per state dtype, stepping in turn."""
    model = make_model()
    _, corridor = corridor_tokens(model)
    tokens = corridor.unsqueeze(1).expand(3, batch, -1).contiguous()
    stacks = {name: RecurrentStack(model, batch, state_dtype=dt) for name, dt in DTYPES.items()}
    times: dict[str, list[float]] = {name: [] for name in stacks}
    order = list(stacks)
    for i in range(reps):
        for name in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for token in tokens:
                stacks[name].step(token)
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", help="episode lengths in steps")
    parser.add_argument("--batches", type=int, nargs="+", help="rows acting at once")
    parser.add_argument("--reps", type=int, help="timed steps per batch")
    add_common_args(parser, [], quick=False)
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(machine_line(info))
    errors = drift(args.lengths)
    print("steps      float32 state   float64 state   (relative error against float64)")
    for row in errors:
        print(f"{row['steps']:<10} {row['relative_error_float32_state']:<15.2e} "
              f"{row['relative_error_float64_state']:.2e}")  # fmt: skip
    timings = [{"batch": b, **{f"{k}_state_ms": v for k, v in step_ms(b, args.reps).items()}}
               for b in args.batches]  # fmt: skip
    print("batch   ms per step: float32 state, float64 state")
    for row in timings:
        print(f"{row['batch']:<7} {row['float32_state_ms']:.3f}  {row['float64_state_ms']:.3f}")
    config = {"profile": args.profile, "lengths": args.lengths, "batches": args.batches,
              "reps": args.reps}  # fmt: skip
    payload = {"machine": info, "config": config, "drift": errors, "step_ms": timings}
    publish(args, [write_json(args, JSON_NAME, payload)], {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
