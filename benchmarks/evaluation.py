"""Evaluation throughput on HalfCheetah-v5 (300-step episodes): env steps per second.

A randomly initialised agent at the papers' size (embed 128, 3 layers, 1 head); speed does
not depend on the weights. Measured side by side in one process, one torch thread:

- env only: the vector env of M envs stepping precomputed random actions;
- policy only: the batched recurrent policy step (act + observe) for M envs, no env;
- the peer baseline: one env, a plain PyTorch loop that recomputes a K = 20 softmax
  Decision Transformer over its last 20 steps at every step;
- the flowrl evaluator (recurrent flow agent) at M = 10 and M = 64, sync vector env, and
  with `--async-envs` also Gymnasium's AsyncVectorEnv (worker processes).

For the largest M it prints the bound of a serial loop made of the two parts run alone,
1 / (1/env + 1/policy). Writes evaluation_cpu.json to --out (default benchmarks/out/); the
committed benchmarks/results/evaluation_cpu.json changes only with --update-committed.

    python benchmarks/evaluation.py [--quick] [--async-envs]
    python benchmarks/evaluation.py --smoke --out /tmp/e   # seconds: M = 2, 3, 20-step episodes
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from harness import RESULTS, add_common_args, publish, resolve_profile, write_json

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.eval import evaluate
from flowrl.eval.rollout import make_envs
from flowrl.experiments.hostinfo import machine, machine_line

JSON_NAME = "evaluation_cpu.json"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME}
ENV = "HalfCheetah-v5"
OBS, ACT = 17, 6
TARGET = 6000.0
# rounds: episodes per env slot; peer_episodes: the single-env peer loop's episodes
PROFILES = {
    "full": {"num_envs": [10, 64], "steps": 300, "rounds": 2, "peer_episodes": 4},
    "quick": {"num_envs": [10, 64], "steps": 300, "rounds": 1, "peer_episodes": 2},
    "smoke": {"num_envs": [2, 3], "steps": 20, "rounds": 1, "peer_episodes": 1},
}


def make_agent(attention: str, mode: str) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=OBS, act_dim=ACT, attention=attention, context_mode=mode, context_len=20
    )
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(OBS), np.ones(OBS), np.ones(ACT), return_scale=1000.0),
        dataset="random",
        env_id=ENV,
    )


def env_only(num_envs: int, episodes: int, steps: int, vectorization: str) -> float:
    """Env steps/s of the vector env alone, `steps`-step episodes of random actions."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, num_envs, ACT)).astype(np.float32)
    envs = make_envs(ENV, num_envs, vectorization=vectorization)
    try:
        envs.reset(seed=0)
        start = time.perf_counter()
        for _ in range(episodes):
            envs.reset(options={"reset_mask": np.ones(num_envs, bool)})
            for t in range(steps):
                envs.step(actions[t])
        return episodes * steps * num_envs / (time.perf_counter() - start)
    finally:
        envs.close()


def policy_only(agent: DecisionTransformerAgent, num_envs: int, steps: int) -> float:
    """Env steps/s of the batched recurrent policy alone (act + observe, no env)."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(steps, num_envs, OBS)).astype(np.float32)
    policy = agent.policy(num_envs, steps + 1, recurrent=True)
    policy.reset(np.ones(num_envs, bool), np.full(num_envs, TARGET))
    start = time.perf_counter()
    for t in range(steps):
        policy.act(obs[t])
        policy.observe(np.ones(num_envs))
    return steps * num_envs / (time.perf_counter() - start)


@torch.no_grad()
def peer_loop(model: DecisionTransformer, episodes: int, length: int) -> float:
    """One env; each step recomputes the K = 20 window with the softmax model (plain PyTorch)."""
    K = model.cfg.context_len
    env = gym.make(ENV, max_episode_steps=length)
    steps = 0
    start = time.perf_counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        states = torch.zeros(1, length, OBS)
        actions = torch.zeros(1, length, ACT)
        rtg = torch.zeros(1, length)
        return_to_go = TARGET
        for t in range(length):
            states[0, t] = torch.as_tensor(obs)
            rtg[0, t] = return_to_go / 1000.0
            lo = max(0, t + 1 - K)
            timesteps = torch.arange(lo, t + 1).unsqueeze(0)
            window = slice(lo, t + 1)
            predicted = model(states[:, window], actions[:, window], rtg[:, window], timesteps)
            action = predicted[0, -1]
            actions[0, t] = action
            obs, reward, terminated, truncated, _ = env.step(action.numpy())
            return_to_go -= reward
            steps += 1
            if terminated or truncated:
                break
    env.close()
    return steps / (time.perf_counter() - start)


def evaluator(
    agent: DecisionTransformerAgent, num_envs: int, episodes: int, steps: int, vectorization: str
) -> float:
    """Env steps/s of `flowrl.eval.evaluate`: `episodes` episodes on `num_envs` envs."""
    start = time.perf_counter()
    (result,) = evaluate(
        agent,
        target_returns=[TARGET],
        episodes=episodes,
        num_envs=num_envs,
        max_steps=steps,
        vectorization=vectorization,
    )
    return float(result.lengths.sum()) / (time.perf_counter() - start)


def measure(args: argparse.Namespace, modes: list[str]) -> tuple[dict, dict]:
    """Env steps/s of every part, and the checks: the evaluator against the serial bound
    at the largest M and against the peer loop at the smallest."""
    flow = make_agent("flow", "episode")
    peer = make_agent("softmax", "window").model
    rows: dict[str, float] = {}
    rows["peer_single_env_K20_recompute"] = peer_loop(peer, args.peer_episodes, args.steps)
    for M in args.num_envs:
        rows[f"policy_only_M{M}"] = policy_only(flow, M, args.steps)
        for mode in modes:
            rows[f"env_only_M{M}_{mode}"] = env_only(M, args.rounds, args.steps, mode)
            rows[f"evaluator_M{M}_{mode}"] = evaluator(flow, M, args.rounds * M, args.steps, mode)
    small, large = min(args.num_envs), max(args.num_envs)
    checks = {}
    for mode in modes:
        env, pol = rows[f"env_only_M{large}_{mode}"], rows[f"policy_only_M{large}"]
        bound = 1.0 / (1.0 / env + 1.0 / pol)
        checks[f"M{large}_{mode}_serial_bound"] = bound
        checks[f"M{large}_{mode}_evaluator_over_bound"] = rows[f"evaluator_M{large}_{mode}"] / bound
        checks[f"M{small}_{mode}_evaluator_over_peer"] = (
            rows[f"evaluator_M{small}_{mode}"] / rows["peer_single_env_K20_recompute"]
        )
    return rows, checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--async-envs", action="store_true", help="also AsyncVectorEnv")
    parser.add_argument("--num-envs", type=int, nargs="+", help="M (10 64)")
    add_common_args(parser, list(COMMITTED.values()))
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    info = machine()
    modes = ["sync", "async"] if args.async_envs else ["sync"]
    rows, checks = measure(args, modes)
    lines = [f"{ENV}, {args.steps}-step episodes, env steps/s; machine: {machine_line(info)}"]
    lines += [f"  {name:<34} {value:9.0f}" for name, value in rows.items()]
    for name, value in checks.items():
        unit = "x" if "over" in name else " env steps/s"
        lines.append(f"  {name:<34} {value:9.2f}{unit}")
    text = "\n".join(lines)
    print(text)
    info["load_average_at_end"] = list(os.getloadavg())
    config = {"profile": args.profile, "env": ENV, "gymnasium": gym.__version__, "modes": modes,
              **{key: getattr(args, key) for key in PROFILES["full"]}}  # fmt: skip
    payload = {"machine": info, "config": config, "env_steps_per_s": rows, "checks": checks,
               "table": text}  # fmt: skip
    publish(args, [write_json(args, JSON_NAME, payload)], COMMITTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
