"""CORL's Decision Transformer (`algorithms/offline/dt.py` of the public CORL repository)
trained on the same data as flowrl, for its steps/s side by side with flowrl's.

dt.py is not part of this repository: `--dt` names a copy of it (e.g. in the ignored
benchmarks/out/corl/). It is imported as it is, with stand-ins for what it imports but this
runner does not use: `d4rl` (imported for its side effects), `gym` (the old API, used only in
its evaluation), `wandb` and `pyrallis` (its logging and command line). Its data loader,
`load_d4rl_trajectories`, is replaced by one that reads the same dataset flowrl trains on
(a Minari id under MINARI_DATASETS_PATH, or papers_budget.py's packed file) into the
trajectories it builds from D4RL. The rest is CORL's own: `SequenceDataset` (windows drawn
in proportion to episode length, through a `DataLoader` with 4 workers and pinned memory),
`DecisionTransformer` (embed 128, 3 layers, 1 head, K = 20: its defaults), and its training
step as `train` takes it: copy, forward, masked MSE, backward, clip 0.25, AdamW, warmup, and
`loss.item()` each step (what its `wandb.log` reads). No evaluation: steps/s only.

    python benchmarks/corl_dt.py --dt benchmarks/out/corl/dt.py --dataset zoo/hopper/medium-v0
    python benchmarks/corl_dt.py --dt DT --data benchmarks/out/papers-budget/hopper-minari.tar.xz
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from harness import DEFAULT_OUT, add_common_args, resolve_profile
from papers_budget import unpack

from flowrl.experiments.hostinfo import machine, machine_line

PROFILES = {
    "full": {"steps": 1000, "warmup": 50, "workers": 4},
    "smoke": {"steps": 5, "warmup": 2, "workers": 1},
}


def import_dt(path: Path) -> types.ModuleType:
    """CORL's dt.py as a module, with stand-ins for d4rl, gym, wandb and pyrallis."""
    if not path.is_file():
        raise SystemExit(f"--dt {path}: no such file (a copy of CORL's algorithms/offline/dt.py)")
    gym = types.ModuleType("gym")
    gym.Env = object  # its signatures name gym.Env; its evaluation is not run
    pyrallis = types.ModuleType("pyrallis")
    pyrallis.wrap = lambda *args, **kwargs: lambda fn: fn
    stand_ins = {"d4rl": types.ModuleType("d4rl"), "gym": gym, "pyrallis": pyrallis}
    stand_ins["wandb"] = types.ModuleType("wandb")
    for name, module in stand_ins.items():
        sys.modules.setdefault(name, module)
    spec = importlib.util.spec_from_file_location("corl_dt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trajectories(dt: types.ModuleType, dataset_id: str):
    """`load_d4rl_trajectories`' result for a flowrl dataset: float32 episodes with their
    returns-to-go (CORL's own `discounted_cumsum`, gamma 1), and the observation statistics
    and episode lengths."""
    from flowrl.data import load_dataset

    data = load_dataset(dataset_id)
    episodes = []
    for ep in data.episodes:
        traj = {
            "observations": ep.observations.astype(np.float32),
            "actions": ep.actions.astype(np.float32),
            "rewards": ep.rewards.astype(np.float32),
        }
        traj["returns"] = dt.discounted_cumsum(traj["rewards"], gamma=1.0)
        episodes.append(traj)
    observations = np.concatenate([ep.observations for ep in data.episodes])
    info = {
        "obs_mean": observations.mean(0, keepdims=True),
        "obs_std": observations.std(0, keepdims=True) + 1e-6,
        "traj_lens": np.array([len(ep) for ep in data.episodes]),
    }
    return episodes, info, data


def measure(args: argparse.Namespace) -> dict:
    dt = import_dt(args.dt)
    episodes, info, data = trajectories(dt, args.dataset)
    dt.load_d4rl_trajectories = lambda env_name, gamma=1.0: (episodes, info)
    config = dt.TrainConfig(env_name=args.dataset, device=args.device)
    torch.manual_seed(config.train_seed)
    dataset = dt.SequenceDataset(
        config.env_name, seq_len=config.seq_len, reward_scale=config.reward_scale
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, pin_memory=True, num_workers=args.workers
    )
    model = dt.DecisionTransformer(
        state_dim=data.obs_dim,
        action_dim=data.act_dim,
        embedding_dim=config.embedding_dim,
        seq_len=config.seq_len,
        episode_len=config.episode_len,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        attention_dropout=config.attention_dropout,
        residual_dropout=config.residual_dropout,
        embedding_dropout=config.embedding_dropout,
        max_action=config.max_action,
    ).to(config.device)
    optim = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=config.betas,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda steps: min((steps + 1) / config.warmup_steps, 1)
    )
    batches = iter(loader)

    def step() -> float:
        """`train`'s loop body, its logging's `loss.item()` included."""
        states, actions, returns, time_steps, mask = [b.to(config.device) for b in next(batches)]
        padding_mask = ~mask.to(torch.bool)
        predicted = model(
            states=states,
            actions=actions,
            returns_to_go=returns,
            time_steps=time_steps,
            padding_mask=padding_mask,
        )
        loss = torch.nn.functional.mse_loss(predicted, actions.detach(), reduction="none")
        loss = (loss * mask.unsqueeze(-1)).mean()
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        optim.step()
        scheduler.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    seconds = time.perf_counter() - start
    return {
        "dataset": args.dataset,
        "steps_per_s": args.steps / seconds,
        "step_ms": 1e3 * seconds / args.steps,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "last_loss": loss,
        "workers": args.workers,
        "model": {
            "embed": config.embedding_dim,
            "layers": config.num_layers,
            "heads": config.num_heads,
            "K": config.seq_len,
        },
        "device": str(config.device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", type=Path, required=True, help="a copy of CORL's dt.py")
    parser.add_argument("--dataset", default="zoo/hopper/medium-v0", help="a dataset id")
    parser.add_argument("--data", type=Path, help="papers_budget.py's packed datasets")
    parser.add_argument("--work", type=Path, default=DEFAULT_OUT / "corl" / "work")
    parser.add_argument("--steps", type=int, help="timed steps (1000)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (50)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (CORL's 4)")
    add_common_args(parser, [], quick=False, out=DEFAULT_OUT / "corl")
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.data is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(unpack(args.data, args.work / "datasets"))
    result = {"machine": machine(torch_threads=torch.get_num_threads()), **measure(args)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corl_dt.json").write_text(json.dumps(result, indent=1))
    print(
        f"CORL dt.py on {args.dataset}, {machine_line(result['machine'])}: "
        f"{result['steps_per_s']:.2f} steps/s ({result['step_ms']:.1f} ms a step, "
        f"{args.steps} steps, {args.workers} loader workers); wrote {args.out / 'corl_dt.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
