"""Per-step inference time against context length, and env steps/s of Hopper evaluations.

A randomly initialised agent at the papers' size (embed 128, 3 layers, 1 head) with
Hopper-v5 shapes (obs 11, act 3); no dataset needed. Part 1 times one acting step
(act + observe: three tokens) at context lengths of 10 to 3000 tokens (3 tokens per
timestep), batch 1, 10 and 64, for the recurrent flow path (`RecurrentStack`, in place),
for the same policy stepping through the plain `DecisionTransformer.step` (the reference
form, allocating a state per token), and for recomputing the whole episode (skipped at
batch 64 past 300 tokens). Part 2 runs an evaluation of
N Hopper-v5 episodes at M = 1 and M = 10 with a window-mode K = 20 agent and with the
recurrent episode-mode agent. Prints tables, writes benchmarks/results/inference_cpu.json.

    PYTHONPATH=. python benchmarks/inference.py [--quick] [--episodes N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.agents.decision_transformer import DecisionTransformer as Model
from flowrl.eval import evaluate

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT = 11, 3
TOKENS = (10, 30, 100, 300, 1000, 3000)
BATCHES = (1, 10, 64)
RECOMPUTE_MAX_TOKENS = {64: 300}  # recomputing 64 episodes of 3000 tokens takes seconds a step


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


def make_agent(mode: str) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=OBS, act_dim=ACT, embed_dim=128, n_layers=3, n_heads=1, context_mode=mode
    )
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(OBS), np.ones(OBS), np.ones(ACT), return_scale=1000.0),
        dataset="random",
        env_id="Hopper-v5",
    )


def recurrent_ms(
    agent: DecisionTransformerAgent, batch: int, steps: list[int], reps: int, plain: bool
) -> dict[int, float]:
    """Median ms of act + observe at each of `steps` timesteps, walking one episode;
    `plain`: through `DecisionTransformer.step` instead of the in-place stack."""
    rng = np.random.default_rng(0)
    policy = agent.policy(batch, max(steps) + reps + 1, recurrent=True)
    if plain:
        policy.stack = PlainStack(policy.model)
    policy.reset(np.ones(batch, bool), np.full(batch, 3600.0))
    times: list[float] = []
    for _ in range(max(steps) + reps):
        obs, reward = rng.normal(size=(batch, OBS)), rng.normal(size=batch)
        start = time.perf_counter()
        policy.act(obs)
        policy.observe(reward)
        times.append(time.perf_counter() - start)
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


def latency(reps: int) -> list[dict]:
    agent = make_agent("episode")
    steps = [max(1, tokens // 3) for tokens in TOKENS]
    rows = []
    for batch in BATCHES:
        recurrent = recurrent_ms(agent, batch, steps, reps, plain=False)
        plain = recurrent_ms(agent, batch, steps, reps, plain=True)
        for tokens, step in zip(TOKENS, steps, strict=True):
            full = None
            if tokens <= RECOMPUTE_MAX_TOKENS.get(batch, tokens):
                full = recompute_ms(agent, batch, step, reps)
            rows.append(
                {
                    "batch": batch,
                    "tokens": tokens,
                    "timesteps": step,
                    "recurrent_ms": recurrent[step],
                    "plain_step_ms": plain[step],
                    "recompute_ms": full,
                    "plain_over_recurrent": plain[step] / recurrent[step],
                    "recompute_over_recurrent": None if full is None else full / recurrent[step],
                }
            )
    return rows


def throughput(episodes: int) -> list[dict]:
    rows = []
    for name, mode in (("window K=20", "window"), ("recurrent", "episode")):
        agent = make_agent(mode)
        for envs in (1, 10):
            start = time.perf_counter()
            (result,) = evaluate(agent, target_returns=[3600.0], episodes=episodes, num_envs=envs)
            seconds = time.perf_counter() - start
            steps = int(result.lengths.sum())
            rows.append(
                {
                    "agent": name,
                    "num_envs": envs,
                    "episodes": episodes,
                    "env_steps": steps,
                    "seconds": seconds,
                    "env_steps_per_s": steps / seconds,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 episodes and fewer repeats")
    parser.add_argument("--episodes", type=int, help="evaluation episodes (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    episodes = args.episodes or (10 if args.quick else 100)
    reps = 5 if args.quick else 20

    rows = latency(reps)
    print(
        f"{'batch':>5} {'tokens':>6} {'recurrent ms':>12} {'plain step ms':>13} {'ratio':>6} "
        f"{'recompute ms':>12} {'ratio':>7}"
    )
    for r in rows:
        full, ratio = r["recompute_ms"], r["recompute_over_recurrent"]
        print(
            f"{r['batch']:>5} {r['tokens']:>6} {r['recurrent_ms']:>12.3f} "
            f"{r['plain_step_ms']:>13.3f} {r['plain_over_recurrent']:>5.1f}x "
            + ("           -       -" if full is None else f"{full:>12.3f} {ratio:>6.1f}x")
        )
    checks = {}
    one = {r["tokens"]: r["recurrent_ms"] for r in rows if r["batch"] == 1}
    checks["batch_1_recurrent_ms_at_30_tokens"] = one[30]
    verdict = "ok" if one[30] <= 0.6 else "OVER 0.6 ms"
    print(f"batch 1: recurrent step at 30 tokens {one[30]:.3f} ms (target 0.6 ms: {verdict})")
    for batch in BATCHES:
        ms = {r["tokens"]: r["recurrent_ms"] for r in rows if r["batch"] == batch}
        ratio = ms[3000] / ms[30]
        checks[f"batch_{batch}_recurrent_3000_over_30"] = ratio
        verdict = "ok" if ratio <= 1.5 else "OVER 1.5x"
        print(
            f"batch {batch}: recurrent step at 3000 tokens / at 30 tokens = {ratio:.2f} ({verdict})"
        )

    evals = throughput(episodes)
    print(f"\n{'agent':<12} {'M':>3} {'episodes':>8} {'env steps':>9} {'steps/s':>9}")
    for r in evals:
        print(
            f"{r['agent']:<12} {r['num_envs']:>3} {r['episodes']:>8} {r['env_steps']:>9} "
            f"{r['env_steps_per_s']:>9.0f}"
        )

    out = ROOT / "benchmarks" / "results" / "inference_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "quick": args.quick,
        "load_average_at_end": os.getloadavg(),
    }
    payload = {"meta": meta, "latency": rows, "checks": checks, "evaluation": evals}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
