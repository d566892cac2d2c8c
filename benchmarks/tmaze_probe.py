"""Where a T-Maze agent's memory fails: how much the junction decision depends on the cue.

For each trained run (a checkpoint of benchmarks/memory.py) and each corridor length, the
agent is fed the oracle's passive trajectory (cue, L steps right, the junction) twice, once
with the upper and once with the lower cue, through the full model (whole-episode context;
a window agent sees its last K steps). At the junction's state token it reports:

- `p_correct`: the probability of the correct turn, averaged over both cues;
- `margin`: the smaller over both cues of the correct turn's logit minus the wrong one's.
  Greedy acting in the noise-free maze sees just these two inputs, so its success rate is
  100% when the margin is positive, else about 50% (one fixed turn) or 0%, however many
  episodes are run: a thin positive margin counts as full success;
- `cue_share`, per block: |h(up) - h(down)| / |h(up)|, the part of the block's output at
  the junction that changes with the cue (0: the cue never reaches the decision);
- for the flow kinds (`flow`, `flow-relu`), per cue, block and head: `cue_weight`, the cue
  token's part of the junction's attention weights <Q_j, K_s> C_s (docs/flow-attention.md,
  step 6);
  `cue_source`, the cue token's conserved source Ohat (clamped to [-c, c]); `cue_z_share`,
  its part exp(Ohat) / Z of the competition normaliser at the junction. A cue whose source
  dominates Z scales every later token's competition C_s by 1 / Z, a signal that fades
  only once the corridor's own exp(Ohat) sum to about exp(c); `silent_keys`, the share of
  tokens before the junction whose key features are all 0 (only `flow-relu` has any: such
  tokens drop out of the junction's output whatever their number).

    python benchmarks/tmaze_probe.py sweeps/memory/passive-L30-flow-episode --factors 1 2 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowrl.agents import DecisionTransformerAgent  # noqa: E402
from flowrl.nn import attention_kind  # noqa: E402
from flowrl.ops.flow_attention.gates import features, flow_gates  # noqa: E402

RIGHT, UP, DOWN = 0, 1, 3


def oracle_inputs(agent: DecisionTransformerAgent, length: int, cue: int) -> list[torch.Tensor]:
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
def junction(
    agent: DecisionTransformerAgent, length: int, cue: int
) -> tuple[torch.Tensor, list, list]:
    """Turn logits (up, down) at the junction, each block's output there, and each block's
    attention projections q, k, v for the whole sequence."""
    model, hidden, qkv = agent.model, [], []
    hooks = [b.register_forward_hook(lambda m, i, o: hidden.append(o[0, -2])) for b in model.blocks]
    hooks += [b.attn.qkv.register_forward_hook(lambda m, i, o: qkv.append(o)) for b in model.blocks]
    try:
        logits = model(*oracle_inputs(agent, length, cue))[0, -1]
    finally:
        for hook in hooks:
            hook.remove()
    return logits[[UP, DOWN]], hidden, qkv


@torch.no_grad()
def flow_readings(agent: DecisionTransformerAgent, qkv: list) -> dict:
    """Per block and head, what the flow gates make of the cue token (docs/flow-attention.md):
    its share of the junction's weights <Q_j, K_s> C_s, its conserved source Ohat and its
    share exp(Ohat) / Z of the competition's normaliser at the junction."""
    keys = ("cue_weight", "cue_source", "cue_z_share", "silent_keys")
    readings: dict[str, list] = {key: [] for key in keys}
    for block, out in zip(agent.model.blocks, qkv, strict=True):
        attn = block.attn  # tokens R_1, s_1 (the cue), a_1, ..., s_T (the junction), a_T
        heads = out.double().unflatten(-1, (3, attn.num_heads, attn.head_dim)).unbind(-3)
        q, k, v = (x.transpose(1, 2)[:, :, :-1] for x in heads)  # (1, H, t, d)
        Q, K, _, _ = features(q, k, v, None, attn.feature_map)  # up to the junction
        gates = flow_gates(Q, K, eps=attn.eps, clamp=attn.clamp)
        Q, K = Q[0], K[0]
        weights = (K @ Q[:, -1:].transpose(1, 2)).squeeze(-1) * gates.competition[0]
        source = gates.source_exp[0, :, 1]
        readings["cue_weight"].append((weights[:, 1] / weights.sum(-1)).tolist())
        readings["cue_source"].append(source.log().tolist())
        readings["cue_z_share"].append((source / gates.competition_sums[0, :, -1]).tolist())
        readings["silent_keys"].append((K == 0).all(-1).double().mean(-1).tolist())
    return readings


def probe(checkpoint: Path, length: int) -> dict:
    agent = DecisionTransformerAgent.load(checkpoint)
    up, h_up, qkv_up = junction(agent, length, +1)
    down, h_down, qkv_down = junction(agent, length, -1)
    share = [float((a - b).norm() / a.norm()) for a, b in zip(h_up, h_down, strict=True)]
    p_correct = float(F.softmax(up, -1)[0] + F.softmax(down, -1)[1]) / 2
    margin = float(torch.minimum(up[0] - up[1], down[1] - down[0]))
    result = {"p_correct": p_correct, "margin": margin, "cue_share": share}
    if attention_kind(agent.model.cfg.attention).feature_map is not None:  # a flow kind
        result["up"], result["down"] = flow_readings(agent, qkv_up), flow_readings(agent, qkv_down)
    return result


def readings(flow: dict) -> str:
    """One line per cue: the flow readings by block (|) and head."""
    return "  ".join(
        f"{key} " + " | ".join(" ".join(f"{x:.2f}" for x in block) for block in flow[key])
        for key in flow
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders of memory.py")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--checkpoint", default="last.pt", help="file name in runs' checkpoints/")
    args = parser.parse_args()
    rows = []
    for sweep in args.sweeps:
        length = int(sweep.name.split("-L")[1].split("-")[0])
        for checkpoint in sorted((sweep / "runs").glob(f"*/checkpoints/{args.checkpoint}")):
            run = checkpoint.parents[1]
            for factor in args.factors:
                result = probe(checkpoint, length * factor)
                rows.append({"run": f"{sweep.name}/{run.name}", "length": length * factor,
                             **result})  # fmt: skip
                share = " ".join(f"{s:.3f}" for s in result["cue_share"])
                where = f"{sweep.name}/{run.name:<8} L={length * factor:<6}"
                print(f"{where} p_correct={result['p_correct']:.3f} margin={result['margin']:+.3f}"
                      f"  cue_share by block: {share}")  # fmt: skip
                for name in ("up", "down"):
                    if name in result:
                        print(f"    {name:>4} cue " + readings(result[name]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
