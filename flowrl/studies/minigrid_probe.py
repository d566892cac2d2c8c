"""Where a MiniGrid-Memory agent's memory fails: its decision at the end of the hallway.

For each env seed the oracle (`minigrid-oracle`) plays the episode: it looks at the room's
object (from the nearest pose that shows it, or up close with `look="up-close"`, the way
`minigrid-up-close-noisy` looks), then walks to the match. The decision is the first step
at which its action differs from the one it would take towards the other object. The
agent is fed the oracle's trajectory up to that step (whole-episode context; a window
agent sees its last K steps) with target return 1, and at the decision's state token
`probe_minigrid` reports, over the episodes:

- `margin`: the mean of the oracle's action's logit minus the logit of the action towards
  the other object;
- `correct`: the share of episodes with a positive margin (greedy acting on the oracle's
  path picks the match there; 0.5 is a coin flip, below it a read-out that points the
  wrong way);
- `correct_by_object`: `correct` for the episodes whose room holds a key and a ball apart
  (1 for one and 0 for the other: the agent no longer reads its memory and guesses one
  object);
- `p_correct`: the mean probability of the oracle's action;
- `steps_since_seen`: the mean number of steps from the first view of the room's object
  to the decision (what the memory has to span);
- for the flow kinds, per block and head, means over the episodes: `memory_weight`, the
  share of the decision's attention weights <Q_t, K_s> C_s on the tokens of the steps whose
  view shows the room's object (the memory the decision can read; the rest is hallway), and
  `hallway_key_norm`, the mean L1 norm of the key features of the other steps' tokens,
  relative to those of the memory's (how loud the hallway is against the memory), and
  `silent_keys`, the share of tokens before the decision whose key features are all 0
  (a closed key gate, or a key whose ReLU features are all cut): tokens no query reads.

`rollout_outcomes` lets the agent act on its own (greedy, recurrent where it can) and sorts
its episodes: `match`, `wrong_seen` (the other object, after the room's object was in
view), `wrong_unseen` (the other object without ever seeing the room's: a guess, so the
failure is the walk back to the room, not the memory) and `timeout` (neither object within
the step limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.agents import DecisionTransformer, DecisionTransformerAgent
from flowrl.envs.minigrid_memory import (
    MiniGridMemory,
    room_object_cell,
    size_with_longer_hallway,
)
from flowrl.envs.minigrid_policies import MiniGridNoisy, MiniGridOracle
from flowrl.nn import FlowAttention


@dataclass(frozen=True)
class Decision:
    """The oracle's episode up to its decision at step t = len(actions)."""

    observations: np.ndarray  # (t + 1, 151)
    actions: np.ndarray  # (t,): the actions before the decision
    seen_at: int  # the step the room's object was first in view
    in_view: np.ndarray  # (t + 1,) bool: the room's object is in the view of each step
    right: int  # the oracle's action at the decision
    away: int  # the action towards the other object there
    room_object: str  # "key" or "ball"


def oracle_decision(size: int, seed: int, look: str = "nearest") -> Decision:
    """The oracle's episode at env seed `seed` up to its decision (module docstring), looking
    at the room's object as `look` says (`MiniGridOracle`)."""
    env = MiniGridMemory(size=size)
    observation, _ = env.reset(seed=seed)
    oracle = MiniGridOracle(env, look)
    other = MiniGridNoisy(env, wrong_pick=1.0, noisy=0.0, look=look)  # the other object
    rng = np.random.default_rng(seed)
    oracle.reset(rng)
    other.reset(rng)
    room_object = env.unwrapped.grid.get(*oracle.room_object).type
    observations, actions, seen_at, in_view = [observation], [], -1, []
    for _ in range(4 * size * size):
        in_view.append(oracle.sees_room_object(observation))
        action, away = oracle(observation), other(observation)
        if oracle.seen and seen_at < 0:
            seen_at = len(actions)
        if action != away:
            return Decision(
                np.stack(observations), np.array(actions, np.int64), seen_at,
                np.array(in_view), action, away, room_object,
            )  # fmt: skip
        observation, *_ = env.step(action)
        observations.append(observation)
        actions.append(action)
    raise RuntimeError(f"MiniGrid-Memory size={size} seed={seed}: the oracle never decided")


def decision_inputs(
    agent: DecisionTransformerAgent, observations: np.ndarray, actions: np.ndarray
) -> list[Tensor]:
    """States, one-hot actions (a placeholder at the decision, which its state token never
    sees), returns-to-go of target 1 and timesteps, batch of one, in the model's scale."""
    cfg, T = agent.model.cfg, len(observations)
    states = agent.normalizer.states(torch.as_tensor(observations, dtype=torch.float32))
    one_hot = F.one_hot(torch.as_tensor(np.append(actions, 0)), cfg.act_dim).float()
    rtg = agent.normalizer.returns(torch.ones(T))  # no reward before the end
    window = T if cfg.context_mode == "episode" else min(T, cfg.context_len)
    return [x[-window:].unsqueeze(0) for x in (states, one_hot, rtg, torch.arange(T))]


def memory_readings(model: DecisionTransformer, inputs: list[Tensor], in_view: Tensor) -> Tensor:
    """(blocks, 3, H): `memory_weight`, `hallway_key_norm` and `silent_keys` (module
    docstring) at the decision's state token, the last token before its action; `in_view`
    (tokens,) marks the tokens of the steps that show the room's object."""
    attention_inputs = []
    hooks = [
        b.attn.register_forward_pre_hook(lambda m, i: attention_inputs.append(i[0][:, :-1]))
        for b in model.blocks
    ]
    try:
        model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    readings = []
    for block, x in zip(model.blocks, attention_inputs, strict=True):
        gates = block.attn.gates(x)
        weights = gates.attention_weights()[0]  # (H, tokens)
        norms = gates.key_features[0].sum(-1)  # ReLU/sigmoid features are >= 0: the L1 norm
        memory = in_view[: weights.shape[-1]]
        readings.append(
            torch.stack([
                weights[:, memory].sum(-1) / weights.sum(-1),
                norms[:, ~memory].mean(-1) / norms[:, memory].mean(-1),
                (norms == 0).to(weights.dtype).mean(-1),
            ])
        )  # fmt: skip
    return torch.stack(readings).float()


@torch.no_grad()
def probe_minigrid(
    agent: DecisionTransformerAgent, size: int, seeds: range, look: str = "nearest"
) -> dict:
    """The probe's readings (module docstring) of `agent` at grid size `size`, one episode
    per env seed in `seeds`, on the path of the oracle that looks as `look` says."""
    model = agent.model.eval()
    flow = all(isinstance(b.attn, FlowAttention) for b in model.blocks)
    margins, p_correct, spans, objects, readings = [], [], [], [], []
    for seed in seeds:
        d = oracle_decision(size, seed, look)
        inputs = decision_inputs(agent, d.observations, d.actions)
        logits = model(*inputs)[0, -1]
        margins.append(float(logits[d.right] - logits[d.away]))
        p_correct.append(float(F.softmax(logits, -1)[d.right]))
        spans.append(len(d.actions) - d.seen_at)
        objects.append(d.room_object)
        if flow and model.cfg.context_mode == "episode":
            in_view = torch.as_tensor(d.in_view).repeat_interleave(3)  # R_t, s_t, a_t
            readings.append(memory_readings(model, inputs, in_view))
    margin, room = np.array(margins), np.array(objects)
    flow_readings = {}
    if readings:
        mean = torch.stack(readings).mean(0)  # (blocks, 3, H)
        flow_readings = {
            "memory_weight": mean[:, 0].tolist(),
            "hallway_key_norm": mean[:, 1].tolist(),
            "silent_keys": mean[:, 2].tolist(),
        }
    return {
        "size": size,
        "episodes": len(margin),
        "margin": float(margin.mean()),
        "correct": float((margin > 0).mean()),
        "correct_by_object": {
            kind: float((margin[room == kind] > 0).mean()) for kind in sorted(set(objects))
        },
        "p_correct": float(np.mean(p_correct)),
        "steps_since_seen": float(np.mean(spans)),
        **flow_readings,
    }


OUTCOMES = ("match", "wrong_seen", "wrong_unseen", "timeout")


@torch.no_grad()
def rollout_outcomes(agent: DecisionTransformerAgent, size: int, seeds: range) -> dict:
    """How the agent's own episodes at grid size `size` end (module docstring), one per env
    seed in `seeds`, all acted at once, each with at most 4 * size + 100 steps."""
    limit, n = 4 * size + 100, len(seeds)
    envs = [MiniGridMemory(size=size) for _ in seeds]
    observations = np.stack(
        [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    )
    policy = agent.policy(n, limit + 1)
    policy.reset(np.ones(n, bool), np.ones(n))
    room = room_object_cell(size)
    seen, running = np.zeros(n, bool), np.ones(n, bool)
    counts = dict.fromkeys(OUTCOMES, 0)
    for _ in range(limit):
        actions = policy.act(observations)
        rewards = np.zeros(n)
        for i in np.flatnonzero(running):  # ended rows keep their last observation
            seen[i] = seen[i] or bool(envs[i].unwrapped.agent_sees(*room))
            observations[i], rewards[i], ended, truncated, _ = envs[i].step(int(actions[i]))
            if ended or truncated:
                running[i] = False
                if not ended:
                    counts["timeout"] += 1
                elif rewards[i] > 0:
                    counts["match"] += 1
                else:
                    counts["wrong_seen" if seen[i] else "wrong_unseen"] += 1
        policy.observe(rewards)
        if not running.any():
            break
    counts["timeout"] += int(running.sum())
    return {"size": size, "episodes": n, **counts}


def probe_sweep(
    sweep: Path, size: int, factors: list[int], seeds: range, look: str = "nearest"
) -> list[dict]:
    """One row per run of a sweep folder (`runs/*/checkpoints/last.pt`) and factor: the
    probe where the way from the room to the end is `factor` times that of `size`, on the
    path of the oracle that looks as `look` says."""
    rows = []
    for path in sorted(sweep.glob("runs/*/checkpoints/last.pt")):
        agent = DecisionTransformerAgent.load(path)
        run = f"{sweep.name}/{path.parents[1].name}"
        for factor in factors:
            longer = size_with_longer_hallway(size, factor)
            row = {"run": run, "factor": factor, **probe_minigrid(agent, longer, seeds, look)}
            rows.append({**row, **rollout_outcomes(agent, longer, seeds)})
    return rows
