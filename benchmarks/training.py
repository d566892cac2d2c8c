"""Decision Transformer training speed on the CPU: flow vs softmax attention, side by side.

One full training step as `flowrl train` runs it (sampler, forward, loss, backward, gradient
clipping, AdamW) at the papers' size (embed 128, 3 layers, 1 head), one thread per process,
each case in its own worker process. Window mode at K = 20, 100, 300 (batch 64) with flow
attention (backend auto), flow on the chunked backend (what auto used before the parallel
backend) and softmax attention; episode mode (whole 1000-step episodes, packed, batch 8)
with flow only. The workers of one context length take their steps in turn (A, B, C, A,
B, C, ...), so that load from other processes falls on every case alike and the ratios
hold even on a shared machine; each case reports its median step.

The data: a synthetic Hopper-shaped dataset (obs 11, act 3, 1000-step episodes), or
`--dataset zoo/hopper/medium-v0` (any id `flowrl datasets` knows; Minari ids read
MINARI_DATASETS_PATH). Prints a table with ratios, writes benchmarks/results/training_cpu.json
and plots steps/s against context length to docs/training_speed.png (needs matplotlib:
pip install -e ".[bench]").

    python benchmarks/training.py            # a few minutes on 2 cores
    python benchmarks/training.py --quick    # K = 20 and 100 only, short budgets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hostinfo import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "training_speed.png"
ATTENTIONS = ("flow", "flow-chunked", "softmax")  # flow = backend auto
WINDOWS = (20, 100, 300)
EPISODE_LEN = 1000
OBS, ACT = 11, 3


def synthetic_dataset(episodes: int = 40, length: int = EPISODE_LEN):
    """Hopper-shaped random episodes: shapes and lengths are all the speed depends on."""
    import numpy as np

    from flowrl.data import Episode, EpisodeDataset

    rng = np.random.default_rng(0)
    return EpisodeDataset(
        f"synthetic hopper {episodes}x{length}",
        [
            Episode(
                observations=rng.normal(size=(length, OBS)),
                actions=rng.uniform(-1, 1, size=(length, ACT)),
                rewards=rng.uniform(0, 3, size=length),
                terminations=np.zeros(length, bool),
                truncations=np.arange(length) == length - 1,
            )
            for _ in range(episodes)
        ],
    )


def serve_case(attention: str, mode: str, K: int, batch: int, dataset: str) -> None:
    """Runs in a worker process: builds the case, then times one training step per "step"
    line on stdin and answers each with a JSON line {"seconds", "tokens"}."""
    import numpy as np
    import torch

    from flowrl.agents import DecisionTransformer, DecisionTransformerConfig, action_loss
    from flowrl.data import EpisodeSampler, WindowSampler, load_dataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = synthetic_dataset() if dataset == "synthetic" else load_dataset(dataset)
    cfg = DecisionTransformerConfig(
        state_dim=data.obs_dim,
        act_dim=data.act_dim,
        attention="softmax" if attention == "softmax" else "flow",
        attention_backend="chunked" if attention == "flow-chunked" else "auto",
        context_mode=mode,
        context_len=K,
    )
    model = DecisionTransformer(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    if mode == "window":
        sampler = WindowSampler(data, context_len=K, batch_size=batch, return_scale=1000.0, seed=0)
    else:
        sampler = EpisodeSampler(data, max_len=K, batch_size=batch, return_scale=1000.0, seed=0)
    largest = np.abs(np.concatenate([ep.actions for ep in data.episodes])).max(0)
    scale = torch.as_tensor(np.where(largest > 0, largest, 1.0), dtype=torch.float32)

    def step() -> int:
        """One training step, as the trainer takes it; returns the tokens trained on."""
        packed = mode == "episode"
        b = (sampler.sample_packed() if packed else sampler.sample()).to_torch()
        actions = b.actions / scale
        predicted = model(
            b.states,
            actions,
            b.returns_to_go,
            b.timesteps,
            cu_seqlens=b.cu_seqlens if packed else None,
        )
        loss = action_loss(predicted, actions, b.mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        return 3 * int(b.mask.sum())

    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        tokens = step()
        print(json.dumps({"seconds": time.perf_counter() - start, "tokens": tokens}), flush=True)


def cases(windows: list[int], episode_batch: int, batch: int) -> list[dict]:
    rows = [
        {"attention": a, "mode": "window", "K": K, "batch": batch}
        for K in windows
        for a in ATTENTIONS
    ]
    if episode_batch:
        rows += [
            {"attention": a, "mode": "episode", "K": EPISODE_LEN, "batch": episode_batch}
            for a in ("flow", "flow-chunked")
        ]
    return rows


class Worker:
    """One case in its own process, stepping when told to."""

    def __init__(self, case: dict, dataset: str) -> None:
        self.case = case
        cmd = [sys.executable, __file__, "--worker", json.dumps(case), "--dataset", dataset]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.times: list[float] = []
        self.tokens: list[int] = []

    def ready(self) -> bool:
        return self.proc.stdout.readline().strip() == "ready"

    def step(self) -> None:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        self.times.append(answer["seconds"])
        self.tokens.append(answer["tokens"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()

    def result(self, warmup: int) -> dict:
        times, tokens = self.times[warmup:], self.tokens[warmup:]
        seconds = statistics.median(times)
        return {
            "steps_per_s": 1.0 / seconds,
            "tokens_per_s": statistics.mean(tokens) / seconds,
            "step_ms": 1e3 * seconds,
            "timed_steps": len(times),
        }


def measure_group(group: list[dict], args: argparse.Namespace, bar) -> list[dict]:
    """The cases of one context length, stepped in turn (A, B, C, A, B, C, ...): whatever
    load the machine carries falls on all of them alike, so their ratios hold."""
    workers = [Worker(case, args.dataset) for case in group]
    try:
        if not all(w.ready() for w in workers):
            return [{**w.case, "error": "worker failed to start"} for w in workers]
        rounds = 0
        while rounds < args.warmup + args.min_steps or (
            min(sum(w.times[args.warmup :]) for w in workers) < args.min_time
            and rounds < args.warmup + 200
        ):
            for w in workers:
                w.step()
            rounds += 1
        bar.update(len(group))
        return [{**w.case, **w.result(args.warmup)} for w in workers]
    finally:
        for w in workers:
            w.close()


def plot(rows: list[dict], path: Path, machine: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print('no matplotlib: skipped the plot (pip install -e ".[bench]")')
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {
        "flow": "flow (parallel backend)",
        "flow-chunked": "flow (chunked backend)",
        "softmax": "softmax",
    }
    for attention, style in zip(ATTENTIONS, ("o-", "s--", "^-"), strict=True):
        points = [
            (r["K"], r["steps_per_s"])
            for r in rows
            if r["attention"] == attention and r["mode"] == "window" and "steps_per_s" in r
        ]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=labels[attention])
    ax.set_xscale("log")
    ax.set_yscale("log")
    windows = sorted({r["K"] for r in rows if r["mode"] == "window"})
    ax.set_xticks(windows, [str(K) for K in windows])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("context length K (timesteps; 3 tokens each)")
    ax.set_ylabel("training steps / s")
    batch = next(r["batch"] for r in rows if r["mode"] == "window")
    ax.set_title(f"Decision Transformer training, batch {batch}, 1 thread\n{machine}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--episode-batch", type=int, default=8, help="episodes per batch (0: skip episode mode)"
    )
    parser.add_argument("--dataset", default="synthetic", help="synthetic or a dataset id")
    parser.add_argument("--min-time", type=float, default=6.0, help="seconds of steps a case")
    parser.add_argument("--min-steps", type=int, default=5, help="timed steps a case, at least")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps a case")
    parser.add_argument("--quick", action="store_true", help="K = 20, 100; short budgets")
    parser.add_argument("--out", type=Path, default=RESULTS / "training_cpu.json")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case = json.loads(args.worker)
        serve_case(case["attention"], case["mode"], case["K"], case["batch"], args.dataset)
        return
    if args.quick:
        args.windows, args.min_time, args.min_steps, args.episode_batch = [20, 100], 2.0, 3, 0
        args.out = RESULTS / "training_cpu_quick.json"

    from tqdm import tqdm

    todo = cases(args.windows, args.episode_batch, args.batch)
    groups: dict[tuple, list[dict]] = {}
    for case in todo:
        groups.setdefault((case["mode"], case["K"]), []).append(case)
    rows: list[dict] = []
    with tqdm(total=len(todo), desc="training cases", unit="case") as bar:
        for group in groups.values():
            rows += measure_group(group, args, bar)

    def get(attention: str, mode: str, K: int) -> dict:
        return next(
            (
                r
                for r in rows
                if (r["attention"], r["mode"], r["K"]) == (attention, mode, K)
                and "steps_per_s" in r
            ),
            {},
        )

    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    lines = [
        f"DT training step, embed 128, 3 layers, 1 head, 1 thread; {args.dataset}; {machine}",
        f"{'mode':>7} {'K':>5} {'batch':>5} | {'steps/s':>23} | {'tokens/s':>23} |"
        f" {'flow/softmax':>12} {'flow/chunked':>12}",
        f"{'':>19} | {'flow':>7} {'chunked':>7} {'softmax':>7} |"
        f" {'flow':>7} {'chunked':>7} {'softmax':>7} |",
    ]
    ratios = {}
    keys = [("window", K) for K in args.windows]
    if args.episode_batch:
        keys.append(("episode", EPISODE_LEN))
    for mode, K in keys:
        cells = {a: get(a, mode, K) for a in ATTENTIONS}

        def fmt(a: str, key: str, cells=cells) -> str:
            return f"{cells[a][key]:7.2f}" if key in cells[a] else f"{'-':>7}"

        def tok(a: str, cells=cells) -> str:
            return f"{cells[a]['tokens_per_s']:7.0f}" if cells[a] else f"{'-':>7}"

        def ratio(a: str, b: str, cells=cells) -> float | None:
            if cells[a] and cells[b]:
                return cells[a]["steps_per_s"] / cells[b]["steps_per_s"]
            return None

        vs_softmax, vs_chunked = ratio("flow", "softmax"), ratio("flow", "flow-chunked")
        ratios[f"{mode}_K{K}"] = {"flow_over_softmax": vs_softmax, "flow_over_chunked": vs_chunked}
        batch = args.batch if mode == "window" else args.episode_batch
        lines.append(
            f"{mode:>7} {K:>5} {batch:>5} | "
            + " ".join(fmt(a, "steps_per_s") for a in ATTENTIONS)
            + " | "
            + " ".join(tok(a) for a in ATTENTIONS)
            + " | "
            + " ".join(f"{r:11.2f}x" if r else f"{'-':>12}" for r in (vs_softmax, vs_chunked))
        )
    print("\n".join(lines))

    import torch

    meta = {
        "device": "cpu",
        "machine": machine,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads_per_process": 1,
        "load_average_at_end": os.getloadavg(),
        "dataset": args.dataset,
        "model": {"embed_dim": 128, "n_layers": 3, "n_heads": 1, "dropout": 0.1},
        "batch": args.batch,
        "episode_batch": args.episode_batch,
        "timing": "cases of one context length stepped in turn, median step time",
        "warmup_steps": args.warmup,
        "min_time_s": args.min_time,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"config": meta, "ratios": ratios, "results": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not args.quick:
        plot(rows, args.plot, machine)


if __name__ == "__main__":
    main()
