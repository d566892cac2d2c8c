"""Where a T-Maze agent's memory fails: how much its junction decision depends on the cue.

The agent is fed the passive oracle's trajectory (the cue, L steps right, the junction)
twice, once with the upper and once with the lower cue, through the full model
(whole-episode context; a window agent sees its last K steps). At the junction's state
token `probe_tmaze` reports:

- `p_correct`: the probability of the correct turn, averaged over both cues;
- `margin`: the smaller over both cues of the correct turn's logit minus the wrong one's.
  Greedy acting in the noise-free maze sees just these inputs, so it succeeds every time
  when the margin is positive;
- `cue_share`, per block: |h(up) - h(down)| / |h(up)|, the part of the block's output at
  the junction that changes with the cue (0: the cue never reaches the decision);
- for the flow kinds, under `up` and `down` (per block, then per head): `cue_weight`, the
  cue token's share of the junction's attention weights <Q_j, K_s> C_s; `cue_source`, the
  cue token's conserved source Ohat (clamped to [-c, c]); `cue_z_share`, its part
  exp(Ohat) / Z of the competition's normaliser at the junction; `silent_keys`, the share
  of tokens before the junction whose key features are all 0 (docs/long-context.md);
- for agents that act through the recurrent state, `acting_margin`: the margin when the
  same inputs go through `RecurrentStack` one token at a time, as `flowrl eval` acts, with
  the attention state in float32 and in float64 (the fp32 sums round as they grow).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.agents import DecisionTransformerAgent
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.envs.tmaze import DOWN, RIGHT, UP
from flowrl.nn import FlowAttention

CUE = 1  # the token of the first state, s_1: tokens are R_1, s_1, a_1, ..., R_T, s_T, a_T
FLOW_READINGS = ("cue_weight", "cue_source", "cue_z_share", "silent_keys")


def oracle_inputs(agent: DecisionTransformerAgent, length: int, cue: int) -> list[Tensor]:
    """States, one-hot actions, returns-to-go and timesteps of the passive oracle's episode
    up to the junction (T = length + 1 steps), in the model's scale, batch of one."""
    T, cfg = length + 1, agent.model.cfg
    obs = torch.zeros(T, cfg.state_dim)
    obs[0, 1] = cue
    obs[-1, 0] = 1.0  # the junction: [1, 0]
    actions = F.one_hot(torch.full((T,), RIGHT), cfg.act_dim).float()
    window = T if cfg.context_mode == "episode" else min(T, cfg.context_len)
    rtg = agent.normalizer.returns(torch.ones(T))  # target 1: no reward before the end
    steps = torch.arange(T)
    return [x[-window:].unsqueeze(0) for x in (agent.normalizer.states(obs), actions, rtg, steps)]


@torch.no_grad()
def junction(agent: DecisionTransformerAgent, length: int, cue: int) -> tuple[Tensor, list, list]:
    """Turn logits (up, down) at the junction, each block's output there, and each block's
    attention input up to the junction's state token."""
    model, hidden, inputs = agent.model.eval(), [], []
    hooks = [b.register_forward_hook(lambda m, i, o: hidden.append(o[0, -2])) for b in model.blocks]
    hooks += [
        b.attn.register_forward_pre_hook(lambda m, i: inputs.append(i[0][:, :-1]))
        for b in model.blocks
    ]
    try:
        logits = model(*oracle_inputs(agent, length, cue))[0, -1]
    finally:
        for hook in hooks:
            hook.remove()
    return logits[[UP, DOWN]], hidden, inputs


@torch.inference_mode()
def acting_logits(agent: DecisionTransformerAgent, length: int, state_dtype: torch.dtype) -> Tensor:
    """Turn logits (up, down) at the junction for the upper and the lower cue (two rows),
    fed token by token through `RecurrentStack` with the attention state in `state_dtype`."""
    model = agent.model.eval()
    rows = zip(oracle_inputs(agent, length, +1), oracle_inputs(agent, length, -1), strict=True)
    states, actions, returns, steps = (torch.cat(pair) for pair in rows)
    stack = RecurrentStack(model, 2, state_dtype=state_dtype)
    for t in range(states.shape[1]):
        if t:
            stack.step(model.embed_tokens("action", actions[:, t - 1], steps[:, t - 1]))
        stack.step(model.embed_tokens("return", returns[:, t], steps[:, t]))
        hidden = stack.step(model.embed_tokens("state", states[:, t], steps[:, t]))
    return model.action_head(hidden)[:, [UP, DOWN]]


def turn_margin(up: Tensor, down: Tensor) -> float:
    """The smaller over both cues of the correct turn's logit minus the wrong one's."""
    return float(torch.minimum(up[0] - up[1], down[1] - down[0]))


def flow_readings(agent: DecisionTransformerAgent, inputs: list[Tensor]) -> dict[str, list]:
    """Per block and head, what the flow gates make of the cue token at the junction."""
    readings: dict[str, list] = {key: [] for key in FLOW_READINGS}
    for block, x in zip(agent.model.blocks, inputs, strict=True):
        gates = block.attn.gates(x)
        weights = gates.attention_weights()[0]  # (H, t): the junction's weights
        source = gates.source_exp[0, :, CUE]
        silent = (gates.key_features[0] == 0).all(-1).double().mean(-1)
        readings["cue_weight"].append((weights[:, CUE] / weights.sum(-1)).tolist())
        readings["cue_source"].append(source.log().tolist())
        readings["cue_z_share"].append((source / gates.competition_sums[0, :, -1]).tolist())
        readings["silent_keys"].append(silent.tolist())
    return readings


def probe_tmaze(agent: DecisionTransformerAgent, length: int) -> dict:
    """The probe's readings (module docstring) of `agent` in a corridor of `length`."""
    up, h_up, in_up = junction(agent, length, +1)
    down, h_down, in_down = junction(agent, length, -1)
    share = [float((a - b).norm() / a.norm()) for a, b in zip(h_up, h_down, strict=True)]
    p_correct = float(F.softmax(up, -1)[0] + F.softmax(down, -1)[1]) / 2
    result: dict = {"p_correct": p_correct, "margin": turn_margin(up, down), "cue_share": share}
    if all(isinstance(b.attn, FlowAttention) for b in agent.model.blocks):
        result["up"] = flow_readings(agent, in_up)
        result["down"] = flow_readings(agent, in_down)
    if agent.model.recurrent and agent.model.cfg.context_mode == "episode":
        result["acting_margin"] = {
            str(dtype).removeprefix("torch."): turn_margin(*acting_logits(agent, length, dtype))
            for dtype in (torch.float32, torch.float64)
        }
    return result


def probe_sweep(
    sweep: Path, length: int, factors: list[int], checkpoint: str, eps: float | None = None
) -> list[dict]:
    """One row per run of a sweep folder (`runs/*/checkpoints/<checkpoint>`) and factor:
    the probe at a corridor `factor` times the trained `length`. `eps`: the flow layers'
    eps for the probe, in place of the one the agents trained with."""
    rows = []
    for path in sorted(sweep.glob(f"runs/*/checkpoints/{checkpoint}")):
        agent = DecisionTransformerAgent.load(path)
        if eps is not None:
            agent.model.set_attention_eps(eps)
        run = f"{sweep.name}/{path.parents[1].name}"
        rows += [
            {"run": run, "length": length * f, **probe_tmaze(agent, length * f)} for f in factors
        ]
    return rows
