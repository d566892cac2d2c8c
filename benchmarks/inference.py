"""Per-step acting time against context length, sigmoid vs ReLU features, and env steps/s.

Randomly initialised agents at the papers' size (embed 128, 3 layers, 1 head) with Hopper-v5
shapes (obs 11, act 3), one with attention "flow" (sigmoid features) and one with
"flow-relu" (ReLU features); no dataset needed.

Part 1 times one acting step (act + observe: three tokens) at context lengths of 10 to 3000
tokens (3 tokens per timestep), batch 1, 10 and 64: the recurrent path (`RecurrentStack`,
the in-place step), the same policy stepping through the plain `DecisionTransformer.step`
(the reference form, allocating a state per token), and recomputing the whole episode
(skipped at batch 64 past 300 tokens). The two agents walk their episodes side by side,
a step of one, then a step of the other (the order alternating), so load from other
processes falls on both alike; the relu / sigmoid ratio of the in-place step is the median
of those paired steps over the walk (the target: within 10%).

Part 2 runs evaluations of N Hopper-v5 episodes at M = 1 and M = 10 with window-mode K = 20
agents and with the recurrent episode-mode agents, both feature maps.

Prints tables; writes inference_cpu.json to --out (default benchmarks/out/, untracked); the
committed benchmarks/results/inference_cpu.json changes only with --update-committed.

    python benchmarks/inference.py [--quick] [--episodes N] [--threads T] [--out DIR]
    python benchmarks/inference.py --smoke --out /tmp/i  # seconds: every case, tiny sizes
    python benchmarks/inference.py --latency-only        # part 1 only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from harness import RESULTS, add_common_args, publish, resolve_profile, write_json

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.agents.decision_transformer import DecisionTransformer as Model
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.eval import evaluate
from flowrl.experiments.hostinfo import machine, machine_line

JSON_NAME = "inference_cpu.json"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME}
OBS, ACT = 11, 3
KINDS = {"flow": "sigmoid", "flow-relu": "relu"}  # attention kind -> its feature map
TOLERANCE = 0.10  # relu within 10% of sigmoid
PROFILES = {
    "full": {
        "tokens": [10, 30, 100, 300, 1000, 3000],
        "batches": [1, 10, 64],
        "recompute_max_tokens": {64: 300},  # 64 episodes of 3000 tokens: seconds a step
        "reps": 20,
        "episodes": 100,
        "num_envs": [1, 10],
        "max_steps": 1000,
    },
    "quick": {
        "tokens": [10, 30, 100, 300, 1000, 3000],
        "batches": [1, 10, 64],
        "recompute_max_tokens": {64: 300},
        "reps": 5,
        "episodes": 10,
        "num_envs": [1, 10],
        "max_steps": 1000,
    },
    "smoke": {
        "tokens": [10, 30, 90],
        "batches": [1, 3],
        "recompute_max_tokens": {3: 30},
        "reps": 3,
        "episodes": 2,
        "num_envs": [1, 2],
        "max_steps": 30,
    },
}


class PlainStack:
    """The policy's recurrent stack as `DecisionTransformer.step`: the 'before' path."""

    def __init__(self, model: Model) -> None:
        self.model, self.states = model, [None] * model.cfg.n_layers

    def reset(self, rows: torch.Tensor) -> None:
        if self.states[0] is not None:
            self.states = [s.reset(rows) for s in self.states]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        hidden, self.states = self.model.step(token, self.states)
        return hidden


def make_agent(attention: str, mode: str) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=OBS,
        act_dim=ACT,
        embed_dim=128,
        n_layers=3,
        n_heads=1,
        attention=attention,
        context_mode=mode,
    )
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(OBS), np.ones(OBS), np.ones(ACT), return_scale=1000.0),
        dataset="random",
        env_id="Hopper-v5",
    )


def walk(
    agents: dict[str, DecisionTransformerAgent], batch: int, length: int, plain: bool
) -> dict[str, list[float]]:
    """Seconds of act + observe at each of `length` timesteps, each agent walking one
    episode of `batch` rows; the agents take their steps in turn (the order alternating
    from step to step). `plain`: through `DecisionTransformer.step`, else the in-place
    stack (`RecurrentStack`)."""
    rng = np.random.default_rng(0)
    policies = {}
    for kind, agent in agents.items():
        policy = agent.policy(batch, length + 1, recurrent=True)
        if plain:
            policy.stack = PlainStack(policy.model)
        else:
            assert isinstance(policy.stack, RecurrentStack)
        policy.reset(np.ones(batch, bool), np.full(batch, 3600.0))
        policies[kind] = policy
    times: dict[str, list[float]] = {kind: [] for kind in agents}
    order = list(policies)
    for i in range(length):
        obs, reward = rng.normal(size=(batch, OBS)), rng.normal(size=batch)
        for kind in order if i % 2 == 0 else order[::-1]:
            policy = policies[kind]
            start = time.perf_counter()
            policy.act(obs)
            policy.observe(reward)
            times[kind].append(time.perf_counter() - start)
    return times


def at_steps(times: list[float], steps: list[int], reps: int) -> dict[int, float]:
    """Median ms of the `reps` steps from each of `steps` (1-based timesteps) on."""
    return {s: 1e3 * statistics.median(times[s - 1 : s - 1 + reps]) for s in steps}


def recompute_ms(agent: DecisionTransformerAgent, batch: int, step: int, reps: int) -> float:
    """Median ms of one act that recomputes a `step`-timestep episode (random history)."""
    policy = agent.policy(batch, step + 1, recurrent=False)
    policy.reset(np.ones(batch, bool), np.full(batch, 3600.0))
    for buffer in (policy.states, policy.actions, policy.returns_to_go):
        buffer.normal_()
    policy.t.fill_(step - 1)  # the policy acts at timestep `step` without walking there
    obs = np.random.default_rng(0).normal(size=(batch, OBS))
    policy.act(obs)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def paired(times: dict[str, list[float]]) -> float:
    """Median over the walk of relu / sigmoid step time (steps taken side by side)."""
    return statistics.median(r / s for r, s in zip(times["flow-relu"], times["flow"], strict=True))


def latency(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Rows (one per kind, batch, context length) and one summary per batch."""
    agents = {kind: make_agent(kind, "episode") for kind in KINDS}
    steps = [max(1, tokens // 3) for tokens in args.tokens]
    length = max(steps) + args.reps
    rows, summaries = [], []
    for batch in args.batches:
        inplace = walk(agents, batch, length, plain=False)
        plain = walk(agents, batch, length, plain=True)
        recurrent = {k: at_steps(inplace[k], steps, args.reps) for k in KINDS}
        reference = {k: at_steps(plain[k], steps, args.reps) for k in KINDS}
        for tokens, step in zip(args.tokens, steps, strict=True):
            for kind, agent in agents.items():
                full = None
                if tokens <= args.recompute_max_tokens.get(batch, tokens):
                    full = recompute_ms(agent, batch, step, args.reps)
                rows.append(
                    {
                        "attention": kind,
                        "feature_map": KINDS[kind],
                        "batch": batch,
                        "tokens": tokens,
                        "timesteps": step,
                        "recurrent_ms": recurrent[kind][step],
                        "plain_step_ms": reference[kind][step],
                        "recompute_ms": full,
                        "plain_over_recurrent": reference[kind][step] / recurrent[kind][step],
                        "recompute_over_recurrent": None
                        if full is None
                        else full / recurrent[kind][step],
                    }
                )
        summaries.append(
            {
                "batch": batch,
                "walk_steps": length,
                "recurrent_ms": {k: 1e3 * statistics.median(inplace[k]) for k in KINDS},
                "plain_step_ms": {k: 1e3 * statistics.median(plain[k]) for k in KINDS},
                "recurrent_relu_over_sigmoid": paired(inplace),
                "plain_relu_over_sigmoid": paired(plain),
            }
        )
    return rows, summaries


def throughput(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, mode in (("window K=20", "window"), ("recurrent", "episode")):
        for kind in KINDS:
            agent = make_agent(kind, mode)
            for envs in args.num_envs:
                start = time.perf_counter()
                (result,) = evaluate(
                    agent,
                    target_returns=[3600.0],
                    episodes=args.episodes,
                    num_envs=envs,
                    max_steps=args.max_steps,
                )
                seconds = time.perf_counter() - start
                steps = int(result.lengths.sum())
                rows.append(
                    {
                        "agent": name,
                        "attention": kind,
                        "num_envs": envs,
                        "episodes": args.episodes,
                        "env_steps": steps,
                        "seconds": seconds,
                        "env_steps_per_s": steps / seconds,
                    }
                )
    return rows


def latency_table(rows: list[dict], summaries: list[dict]) -> tuple[str, dict]:
    """The side-by-side table and the checks."""
    flow, relu = "flow", "flow-relu"
    lines = [
        "acting step (act + observe, 3 tokens), ms, median; flow = sigmoid, relu = ReLU features",
        f"{'batch':>5} {'tokens':>6} | {'in-place flow':>13} {'relu':>7} {'ratio':>6} |"
        f" {'plain flow':>10} {'relu':>7} | {'recompute flow':>14} {'relu':>8}",
    ]
    by = {(r["attention"], r["batch"], r["tokens"]): r for r in rows}
    for batch in dict.fromkeys(r["batch"] for r in rows):
        for tokens in dict.fromkeys(r["tokens"] for r in rows):
            a, b = by[flow, batch, tokens], by[relu, batch, tokens]
            full = (
                f"{a['recompute_ms']:>14.3f} {b['recompute_ms']:>8.3f}"
                if a["recompute_ms"] is not None
                else f"{'-':>14} {'-':>8}"
            )
            lines.append(
                f"{batch:>5} {tokens:>6} | {a['recurrent_ms']:>13.3f} {b['recurrent_ms']:>7.3f}"
                f" {b['recurrent_ms'] / a['recurrent_ms']:>5.2f}x |"
                f" {a['plain_step_ms']:>10.3f} {b['plain_step_ms']:>7.3f} | {full}"
            )
    checks: dict = {}
    lines.append("")
    for s in summaries:
        batch, ratio = s["batch"], s["recurrent_relu_over_sigmoid"]
        ok = abs(ratio - 1) <= TOLERANCE
        checks[f"batch_{batch}_inplace_relu_over_sigmoid"] = ratio
        lines.append(
            f"batch {batch}: in-place step, whole walk ({s['walk_steps']} steps): flow "
            f"{s['recurrent_ms']['flow']:.3f} ms, relu {s['recurrent_ms']['flow-relu']:.3f} ms;"
            f" relu / sigmoid {ratio:.3f}x paired median "
            f"({'ok' if ok else 'OUTSIDE'} 1 +- {TOLERANCE:.0%}); plain step "
            f"{s['plain_relu_over_sigmoid']:.3f}x"
        )
    for kind in KINDS:
        ms = {(r["batch"], r["tokens"]): r["recurrent_ms"] for r in rows if r["attention"] == kind}
        batches = sorted({b for b, _ in ms})
        longest = max(t for _, t in ms)
        if (1, 30) in ms:
            checks[f"{kind}_batch_1_recurrent_ms_at_30_tokens"] = ms[1, 30]
            verdict = "ok" if ms[1, 30] <= 0.6 else "OVER 0.6 ms"
            lines.append(
                f"{kind} batch 1: in-place step at 30 tokens {ms[1, 30]:.3f} ms "
                f"(target 0.6 ms on the reference machine: {verdict})"
            )
        for batch in batches:
            if (batch, 30) in ms and longest > 30:
                ratio = ms[batch, longest] / ms[batch, 30]
                checks[f"{kind}_batch_{batch}_recurrent_{longest}_over_30"] = ratio
                verdict = "ok" if ratio <= 1.5 else "OVER 1.5x"
                lines.append(
                    f"{kind} batch {batch}: in-place step at {longest} tokens / at 30 tokens = "
                    f"{ratio:.2f} ({verdict})"
                )
    return "\n".join(lines), checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, help="evaluation episodes (default 100)")
    parser.add_argument("--reps", type=int, help="timed steps per point (default 20)")
    parser.add_argument("--tokens", type=int, nargs="+", help="context lengths (tokens)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (1 10 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--latency-only", action="store_true", help="skip the evaluations")
    add_common_args(parser, list(COMMITTED.values()))
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    if 30 not in args.tokens:
        print("note: without 30 in --tokens the context-length checks are skipped")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine()
    started = time.monotonic()
    print(f"machine: {machine_line(info)}", flush=True)

    rows, summaries = latency(args)
    text, checks = latency_table(rows, summaries)
    print(text, flush=True)

    evals = []
    if not args.latency_only:
        evals = throughput(args)
        lines = [
            "",
            f"Hopper-v5 evaluation: {'agent':<12} {'attention':<10} {'M':>3} {'episodes':>8}"
            f" {'env steps':>9} {'steps/s':>9}",
        ]
        for r in evals:
            lines.append(
                f"{'':<21} {r['agent']:<12} {r['attention']:<10} {r['num_envs']:>3}"
                f" {r['episodes']:>8} {r['env_steps']:>9} {r['env_steps_per_s']:>9.0f}"
            )
        print("\n".join(lines))
        text += "\n" + "\n".join(lines)

    info["load_average_at_end"] = list(os.getloadavg())
    payload = {
        "machine": info,
        "config": {
            "profile": args.profile,
            "model": {"embed_dim": 128, "n_layers": 3, "n_heads": 1},
            "kinds": KINDS,
            "tokens": args.tokens,
            "batches": args.batches,
            "reps": args.reps,
            "episodes": args.episodes,
            "num_envs": args.num_envs,
            "timing": "the two kinds' policies step in turn, order alternating; medians",
            "tolerance": TOLERANCE,
        },
        "seconds": round(time.monotonic() - started, 1),
        "latency": rows,
        "relu_vs_sigmoid": summaries,
        "checks": checks,
        "evaluation": evals,
        "table": f"machine: {machine_line(info)}\n{text}",
    }
    publish(args, [write_json(args, JSON_NAME, payload)], COMMITTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
