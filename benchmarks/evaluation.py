"""Evaluation throughput on HalfCheetah-v5 (300-step episodes): env steps per second.

A randomly initialised agent at the papers' size (embed 128, 3 layers, 1 head); speed does
not depend on the weights. Measured side by side in one process, one torch thread:

- env only: the vector env of M envs stepping precomputed random actions;
- policy only: the batched recurrent policy step (act + observe) for M envs, no env;
- the peer baseline: one env, a plain PyTorch loop that recomputes a K = 20 softmax
  Decision Transformer over its last 20 steps at every step;
- the flowrl evaluator (recurrent flow agent) at M = 10 and M = 64, sync vector env, and
  with `--async-envs` also Gymnasium's AsyncVectorEnv (worker processes).

For M = 64 it prints the bound of a serial loop made of the two parts run alone,
1 / (1/env + 1/policy). Writes benchmarks/results/evaluation_cpu.json.

    python benchmarks/evaluation.py [--quick] [--async-envs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.eval import evaluate
from flowrl.eval.rollout import make_envs

ROOT = Path(__file__).resolve().parents[1]
ENV = "HalfCheetah-v5"
OBS, ACT = 17, 6
STEPS = 300
TARGET = 6000.0


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


def env_only(num_envs: int, episodes: int, vectorization: str) -> float:
    """Env steps/s of the vector env alone, 300-step episodes of random actions."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(STEPS, num_envs, ACT)).astype(np.float32)
    envs = make_envs(ENV, num_envs, vectorization=vectorization)
    try:
        envs.reset(seed=0)
        start = time.perf_counter()
        for _ in range(episodes):
            envs.reset(options={"reset_mask": np.ones(num_envs, bool)})
            for t in range(STEPS):
                envs.step(actions[t])
        return episodes * STEPS * num_envs / (time.perf_counter() - start)
    finally:
        envs.close()


def policy_only(agent: DecisionTransformerAgent, num_envs: int) -> float:
    """Env steps/s of the batched recurrent policy alone (act + observe, no env)."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(STEPS, num_envs, OBS)).astype(np.float32)
    policy = agent.policy(num_envs, STEPS + 1, recurrent=True)
    policy.reset(np.ones(num_envs, bool), np.full(num_envs, TARGET))
    start = time.perf_counter()
    for t in range(STEPS):
        policy.act(obs[t])
        policy.observe(np.ones(num_envs))
    return STEPS * num_envs / (time.perf_counter() - start)


@torch.no_grad()
def peer_loop(model: DecisionTransformer, episodes: int) -> float:
    """One env; each step recomputes the K = 20 window with the softmax model (plain PyTorch)."""
    K = model.cfg.context_len
    env = gym.make(ENV, max_episode_steps=STEPS)
    steps = 0
    start = time.perf_counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        states = torch.zeros(1, STEPS, OBS)
        actions = torch.zeros(1, STEPS, ACT)
        rtg = torch.zeros(1, STEPS)
        return_to_go = TARGET
        for t in range(STEPS):
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
    agent: DecisionTransformerAgent, num_envs: int, episodes: int, vectorization: str
) -> float:
    start = time.perf_counter()
    (result,) = evaluate(
        agent,
        target_returns=[TARGET],
        episodes=episodes,
        num_envs=num_envs,
        max_steps=STEPS,
        vectorization=vectorization,
    )
    return float(result.lengths.sum()) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes")
    parser.add_argument("--async-envs", action="store_true", help="also AsyncVectorEnv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 1 if args.quick else 2  # episodes per env slot
    flow = make_agent("flow", "episode")
    peer = make_agent("softmax", "window").model

    modes = ["sync", "async"] if args.async_envs else ["sync"]
    rows: dict[str, float] = {}
    rows["peer_single_env_K20_recompute"] = peer_loop(peer, 2 if args.quick else 4)
    for M in (10, 64):
        rows[f"policy_only_M{M}"] = policy_only(flow, M)
        for mode in modes:
            rows[f"env_only_M{M}_{mode}"] = env_only(M, rounds, mode)
            rows[f"evaluator_M{M}_{mode}"] = evaluator(flow, M, rounds * M, mode)
    checks = {}
    for mode in modes:
        env, pol = rows[f"env_only_M64_{mode}"], rows["policy_only_M64"]
        bound = 1.0 / (1.0 / env + 1.0 / pol)
        checks[f"M64_{mode}_serial_bound"] = bound
        checks[f"M64_{mode}_evaluator_over_bound"] = rows[f"evaluator_M64_{mode}"] / bound
        checks[f"M10_{mode}_evaluator_over_peer"] = (
            rows[f"evaluator_M10_{mode}"] / rows["peer_single_env_K20_recompute"]
        )

    print(f"{ENV}, {STEPS}-step episodes, env steps/s (1 torch thread, {os.cpu_count()} cores)")
    for name, value in rows.items():
        print(f"  {name:<34} {value:9.0f}")
    for name, value in checks.items():
        unit = "x" if "over" in name else " env steps/s"
        print(f"  {name:<34} {value:9.2f}{unit}")

    out = ROOT / "benchmarks" / "results" / "evaluation_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "load_average_at_end": os.getloadavg(),
        "quick": args.quick,
    }
    payload = {"meta": meta, "env_steps_per_s": rows, "checks": checks}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
