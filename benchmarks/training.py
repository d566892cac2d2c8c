"""Decision Transformer training speed on the CPU: flow (sigmoid and ReLU features) vs softmax.

One full training step as `flowrl train` takes it (the trainer's own step,
`flowrl.train.step`: sampler, the agent's loss with its normaliser, backward, gradient
clipping, fused AdamW, the warmup schedule) at the papers' size (embed 128, 3 layers,
1 head), one thread per worker process. Each case also prints where its step's time goes:
sample, copy, forward, backward, optimiser, logging (median ms per phase). `--sampler`
sets `data.sampler` (auto, the trainer's default: the host sampler on the CPU). The cases:

    flow               attention "flow" (sigmoid features), backend auto (the parallel one)
    flow-relu          attention "flow-relu" (ReLU features), backend auto
    flow/chunked       "flow" on the chunked backend
    flow-relu/chunked  "flow-relu" on the chunked backend
    softmax            softmax attention (window mode only)

in window mode at K = 20, 100, 300 (batch 64) and in episode mode (whole 1000-step episodes,
packed, batch 8). Each case runs in its own worker process (one per case kind, reused
across context lengths); the workers of one context length take their steps in turn (A, B,
C, A, B, C, ...), so that load from other processes falls on every case alike and the
ratios hold even on a shared machine. Each case reports its median step; the table shows
the relu / sigmoid ratio of steps/s per backend (the target: within 10%).

The data: a synthetic Hopper-shaped dataset (obs 11, act 3, 1000-step episodes), or
`--dataset zoo/hopper/medium-v0` (any id `flowrl datasets` knows; Minari ids read
MINARI_DATASETS_PATH). Writes training_cpu.json and training_speed.png (needs matplotlib:
pip install -e ".[bench]") to --out (default benchmarks/out/, untracked); the committed
benchmarks/results/training_cpu.json and docs/training_speed.png change only with
--update-committed.

    python benchmarks/training.py                       # several minutes on 2 cores
    python benchmarks/training.py --quick               # K = 20 and 100 only, short budgets
    python benchmarks/training.py --smoke --out /tmp/t  # seconds: every case, tiny sizes
    python benchmarks/training.py --update-committed    # full run, then the committed files
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from harness import DOCS, RESULTS, add_common_args, publish, resolve_profile, write_json
from step_case import BREAKDOWN, breakdown_line, build_step, timed_step
from synthetic import synthetic_dataset

from flowrl.experiments.hostinfo import machine, machine_line

JSON_NAME, PLOT_NAME = "training_cpu.json", "training_speed.png"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME, PLOT_NAME: DOCS / PLOT_NAME}
RETURN_SCALE = 1000.0  # MuJoCo's (the trainer's data.return_scale)

# case kind -> (model.attention, model.attention_backend)
VARIANTS = {
    "flow": ("flow", "auto"),
    "flow-relu": ("flow-relu", "auto"),
    "flow/chunked": ("flow", "chunked"),
    "flow-relu/chunked": ("flow-relu", "chunked"),
    "softmax": ("softmax", "auto"),
}
EPISODE_VARIANTS = ("flow", "flow-relu", "flow/chunked", "flow-relu/chunked")
# backend -> (sigmoid case, relu case): the ratios the table reports
RELU_PAIRS = {"parallel": ("flow", "flow-relu"), "chunked": ("flow/chunked", "flow-relu/chunked")}
TOLERANCE = 0.10  # relu within 10% of sigmoid

# Sizes of each profile; every one can be overridden on the command line.
PROFILES = {
    "full": {
        "windows": [20, 100, 300],
        "batch": 64,
        "episode_batch": 8,
        "episode_len": 1000,
        "episodes": 40,
        "min_time": 6.0,
        "min_steps": 5,
        "warmup": 2,
        "max_rounds": 200,
        "processes": len(VARIANTS),
    },
    "quick": {
        "windows": [20, 100],
        "batch": 64,
        "episode_batch": 0,
        "episode_len": 1000,
        "episodes": 40,
        "min_time": 2.0,
        "min_steps": 3,
        "warmup": 2,
        "max_rounds": 100,
        "processes": len(VARIANTS),
    },
    "smoke": {
        "windows": [5],
        "batch": 4,
        "episode_batch": 2,
        "episode_len": 30,
        "episodes": 4,
        "min_time": 0.0,
        "min_steps": 2,
        "warmup": 1,
        "max_rounds": 2,
        "processes": 2,  # fewer torch imports; the cases still step in turn
    },
}


# ------------------------------------------------------------------------------ worker
def resolved_backend(kind: str, backend: str) -> str:
    """What `backend` runs on the CPU: parallel, chunked, or sdpa for softmax."""
    if kind == "softmax":
        return "sdpa"
    import torch

    from flowrl.ops.flow_attention.api import resolve_backend

    return resolve_backend(backend, torch.device("cpu"))


def build_case(case: dict, data, episode_len: int):
    """The training step of one case, as the trainer builds it (`step_case.build_step`) on
    the CPU. Returns step() -> the seconds of each phase, the loss and the tokens."""
    kind, backend = VARIANTS[case["variant"]]
    step = build_step(
        data,
        attention=kind,
        backend=backend,
        mode=case["mode"],
        K=case["K"],
        batch=case["batch"],
        device="cpu",
        sampler=case["sampler"],
        return_scale=RETURN_SCALE,
        episode_len=episode_len,
    )
    info = {"backend": backend, "resolved_backend": resolved_backend(kind, backend)}
    return (lambda: timed_step(step)), info


def serve(args: argparse.Namespace) -> None:
    """A worker process: builds the data once, then answers one JSON line per request line,
    {"op": "load", "case": {...}} (builds that case, in place of an earlier one of its
    kind) or {"op": "step", "variant": kind} (times one step of that case), until stdin
    closes. Anything else it prints goes to stderr."""
    replies, sys.stdout = sys.stdout, sys.stderr

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    import torch

    torch.set_num_threads(1)
    if args.dataset == "synthetic":
        data = synthetic_dataset(args.episodes, args.episode_len)
    else:
        from flowrl.data import load_dataset

        data = load_dataset(args.dataset)
    reply({"ready": True})
    steps: dict[str, Callable[[], dict[str, float]]] = {}  # case kind -> its step
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "load":
                case = request["case"]
                steps.pop(case["variant"], None)
                steps[case["variant"]], info = build_case(case, data, args.episode_len)
                reply({"loaded": True, **info})
            else:
                step = steps[request["variant"]]
                start = time.perf_counter()
                timed = step()
                seconds = time.perf_counter() - start
                tokens, loss = timed.pop("tokens"), timed.pop("loss")
                reply({"seconds": seconds, "tokens": tokens, "loss": loss, "phases": timed})
        except Exception:
            reply({"error": traceback.format_exc(limit=-4)})


# ------------------------------------------------------------------------------ parent
class Worker:
    """A worker process that builds cases and steps them when told to (one per case kind,
    or, with --processes, several kinds each)."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--dataset",
            args.dataset,
            "--episodes",
            str(args.episodes),
            "--episode-len",
            str(args.episode_len),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.error: str | None = None

    def send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"worker {self.name} exited (code {self.proc.poll()})"}
        answer = json.loads(line)
        if "error" in answer:
            self.error = answer["error"]
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Case:
    """One case's record while its group runs: the step times, round by round."""

    def __init__(self, worker: Worker, case: dict) -> None:
        self.worker, self.case = worker, case
        self.info: dict = {}
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.losses: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.error: str | None = None

    def result(self, warmup: int) -> dict:
        row = {**self.case, **self.info}
        if self.error:
            return {**row, "error": self.error}
        times, tokens = self.times[warmup:], self.tokens[warmup:]
        seconds = statistics.median(times)
        return {
            **row,
            "steps_per_s": 1.0 / seconds,
            "tokens_per_s": statistics.mean(tokens) / seconds,
            "step_ms": 1e3 * seconds,
            "timed_steps": len(times),
            "step_ms_quartiles": [1e3 * q for q in statistics.quantiles(times, n=4)]
            if len(times) > 1
            else None,
            "last_loss": self.losses[-1],
            "phase_ms": {
                p: 1e3 * statistics.median(t[p] for t in self.phases[warmup:]) for p in BREAKDOWN
            },
        }


def measure_group(workers: dict[str, Worker], group: list[dict], args, bar) -> list[dict]:
    """The cases of one context length, stepped in turn (A, B, C, A, B, C, ...): whatever
    load the machine carries falls on all of them alike, so their ratios hold."""
    cases = [Case(workers[c["variant"]], c) for c in group]
    for c in cases:  # the workers build their cases side by side
        c.worker.send({"op": "load", "case": c.case})
    for c in cases:
        answer = c.worker.receive()
        c.error = answer.get("error")
        c.info = {k: v for k, v in answer.items() if k not in ("loaded", "error")}
    live = [c for c in cases if not c.error]
    rounds = 0
    while live and (
        rounds < args.warmup + args.min_steps
        or (
            min(sum(c.times[args.warmup :]) for c in live) < args.min_time
            and rounds < args.warmup + args.max_rounds
        )
    ):
        for c in live:
            c.worker.send({"op": "step", "variant": c.case["variant"]})
            answer = c.worker.receive()
            if "error" in answer:
                c.error = answer["error"]
                continue
            c.times.append(answer["seconds"])
            c.tokens.append(answer["tokens"])
            c.losses.append(answer["loss"])
            c.phases.append(answer["phases"])
        live = [c for c in live if not c.error]
        rounds += 1
    bar.update(len(group))
    rows = [c.result(args.warmup) for c in cases]
    for row, c in zip(rows, cases, strict=True):
        row["_times"] = c.times[args.warmup :]
    return rows


def cases(args: argparse.Namespace) -> list[list[dict]]:
    """The groups of cases: one per window K, then episode mode."""
    groups = [
        [
            {"variant": v, "mode": "window", "K": K, "batch": args.batch, "sampler": args.sampler}
            for v in VARIANTS
        ]
        for K in args.windows
    ]
    if args.episode_batch:
        K = args.episode_len
        groups.append(
            [
                {
                    "variant": v,
                    "mode": "episode",
                    "K": K,
                    "batch": args.episode_batch,
                    "sampler": args.sampler,
                }
                for v in EPISODE_VARIANTS
            ]
        )
    for group in groups:
        for case in group:
            case["attention"], case["backend"] = VARIANTS[case["variant"]]
    return groups


def relu_ratios(rows: list[dict]) -> dict:
    """Per (mode, K) and backend: relu / sigmoid steps/s, as the quotient of the medians
    and as the median of the round-by-round quotients (the cases stepped in turn)."""
    out: dict = {}
    for mode, K in dict.fromkeys((r["mode"], r["K"]) for r in rows):
        entry: dict = {}
        here = {r["variant"]: r for r in rows if (r["mode"], r["K"]) == (mode, K)}
        for backend, (sig, relu) in RELU_PAIRS.items():
            a, b = here.get(sig, {}), here.get(relu, {})
            if "steps_per_s" not in a or "steps_per_s" not in b:
                entry[backend] = None
                continue
            paired = [ta / tb for ta, tb in zip(a["_times"], b["_times"], strict=False)]
            entry[backend] = {
                "relu_over_sigmoid": b["steps_per_s"] / a["steps_per_s"],
                "relu_over_sigmoid_paired": statistics.median(paired),
            }
        for name in ("flow", "flow-relu"):
            a, b = here.get(name, {}), here.get("softmax", {})
            if "steps_per_s" in a and "steps_per_s" in b:
                entry[f"{name}_over_softmax"] = a["steps_per_s"] / b["steps_per_s"]
        out[f"{mode}_K{K}"] = entry
    return out


def table(rows: list[dict], ratios: dict, args, info: dict) -> str:
    width = 9
    heads = {
        "flow": "flow",
        "flow-relu": "relu",
        "flow/chunked": "flow/ch",
        "flow-relu/chunked": "relu/ch",
        "softmax": "softmax",
    }
    lines = [
        f"DT training step, embed 128, 3 layers, 1 head, 1 thread per worker; {args.dataset}",
        f"machine: {machine_line(info)}",
        "steps/s (median step); flow = sigmoid features, relu = ReLU features; "
        "auto = the parallel backend, /ch = chunked",
        f"{'mode':>7} {'K':>5} {'batch':>5} |"
        + "".join(f"{h:>{width}}" for h in heads.values())
        + f" | {'relu/sigmoid':>12} {'relu/sigmoid':>12}"
        + f" | {'flow/softmax':>12} {'relu/softmax':>12}",
        f"{'':>19} |{'':>{width * len(heads)}} | {'parallel':>12} {'chunked':>12} |",
    ]
    outside = False
    for key, entry in ratios.items():
        mode, K = key.split("_K")
        here = {r["variant"]: r for r in rows if (r["mode"], str(r["K"])) == (mode, K)}
        batch = next(iter(here.values()))["batch"]

        def cell(v: str, here=here) -> str:
            r = here.get(v)
            if r is None:
                return f"{'-':>{width}}"
            if "steps_per_s" not in r:
                return f"{'ERROR':>{width}}"
            return f"{r['steps_per_s']:>{width}.2f}"

        def rel(backend: str, entry=entry) -> str:
            nonlocal outside
            r = entry.get(backend)
            if not r:
                return f"{'-':>12}"
            ratio = r["relu_over_sigmoid"]
            flag = abs(ratio - 1) > TOLERANCE
            outside |= flag
            return f"{ratio:>10.3f}x" + ("*" if flag else " ")

        def soft(name: str, entry=entry) -> str:
            r = entry.get(f"{name}_over_softmax")
            return f"{'-':>12}" if r is None else f"{r:>11.2f}x"

        lines.append(
            f"{mode:>7} {K:>5} {batch:>5} |"
            + "".join(cell(v) for v in heads)
            + f" | {rel('parallel')} {rel('chunked')} | {soft('flow')} {soft('flow-relu')}"
        )
    if outside:
        lines.append(f"* relu / sigmoid outside 1 +- {TOLERANCE:.0%}")
    lines.append(
        f"where a step's time goes (median ms per phase, data.sampler={args.sampler}; "
        "logging: reading the loss and gradient norm back)"
    )
    for r in rows:
        if "phase_ms" in r:
            name = f"{r['mode']} K={r['K']} {r['variant']}"
            lines.append(f"  {name:30} {breakdown_line(r['phase_ms'])}")
    for r in rows:
        if "error" in r:
            lines.append(f"ERROR {r['variant']} {r['mode']} K={r['K']}: {r['error'].strip()}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, line: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        print('no matplotlib: skipped the plot (pip install -e ".[bench]")')
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    styles = {
        "flow": ("C0", "o-", "flow, sigmoid (parallel)"),
        "flow-relu": ("C0", "o--", "flow, ReLU (parallel)"),
        "flow/chunked": ("C1", "s-", "flow, sigmoid (chunked)"),
        "flow-relu/chunked": ("C1", "s--", "flow, ReLU (chunked)"),
        "softmax": ("C2", "^-", "softmax"),
    }
    for variant, (color, style, label) in styles.items():
        points = [
            (r["K"], r["steps_per_s"])
            for r in rows
            if r["variant"] == variant and r["mode"] == "window" and "steps_per_s" in r
        ]
        if points:
            ax.plot(*zip(*points, strict=True), style, color=color, label=label)
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
    ax.set_title(f"Decision Transformer training, batch {batch}, 1 thread\n{line}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", help="window K (default 20 100 300)")
    parser.add_argument("--batch", type=int, help="window-mode batch (default 64)")
    parser.add_argument(
        "--episode-batch", type=int, help="episodes per batch (default 8; 0: skip episode mode)"
    )
    parser.add_argument("--episode-len", type=int, help="synthetic episode length (1000)")
    parser.add_argument("--episodes", type=int, help="synthetic episodes (40)")
    parser.add_argument("--dataset", default="synthetic", help="synthetic or a dataset id")
    parser.add_argument(
        "--sampler",
        choices=["auto", "host", "device"],
        default="auto",
        help="data.sampler: where batches are built (auto: host on the CPU)",
    )
    parser.add_argument("--min-time", type=float, help="seconds of timed steps a case (6)")
    parser.add_argument("--min-steps", type=int, help="timed steps a case, at least (5)")
    parser.add_argument("--max-rounds", type=int, help="timed rounds a group, at most (200)")
    parser.add_argument("--warmup", type=int, help="untimed steps a case (2)")
    parser.add_argument(
        "--processes", type=int, help="worker processes (default: one per case kind, 5)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    add_common_args(parser, list(COMMITTED.values()))
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        serve(args)
        return 0
    from tqdm import tqdm

    info = machine(torch_threads=1)  # each worker runs one thread
    started = time.monotonic()
    groups = cases(args)
    rows: list[dict] = []
    processes = [Worker(str(i), args) for i in range(max(1, min(args.processes, len(VARIANTS))))]
    workers = {v: processes[i % len(processes)] for i, v in enumerate(VARIANTS)}
    try:
        for w in processes:
            answer = w.receive()
            if not answer.get("ready"):
                print(f"worker {w.name} failed to start: {answer.get('error')}", file=sys.stderr)
        total = sum(len(g) for g in groups)
        with tqdm(total=total, desc="training cases", unit="case", disable=args.smoke) as bar:
            for group in groups:
                rows += measure_group(workers, group, args, bar)
    finally:
        for w in processes:
            w.close()

    ratios = relu_ratios(rows)
    for r in rows:
        r.pop("_times")
    text = table(rows, ratios, args, info)
    print(text)

    info["load_average_at_end"] = list(os.getloadavg())
    payload = {
        "machine": info,
        "config": {
            "profile": args.profile,
            "dataset": args.dataset,
            "model": {"embed_dim": 128, "n_layers": 3, "n_heads": 1, "dropout": 0.1},
            "windows": args.windows,
            "batch": args.batch,
            "sampler": args.sampler,
            "episode_batch": args.episode_batch,
            "episode_len": args.episode_len,
            "return_scale": RETURN_SCALE,
            "threads_per_worker": 1,
            "worker_processes": len(processes),
            "timing": "cases of one context length stepped in turn, median step time",
            "warmup_steps": args.warmup,
            "min_steps": args.min_steps,
            "min_time_s": args.min_time,
            "tolerance": TOLERANCE,
        },
        "seconds": round(time.monotonic() - started, 1),
        "ratios": ratios,
        "results": rows,
        "table": text,
    }
    written = [write_json(args, JSON_NAME, payload)]
    figure = args.out / PLOT_NAME
    windows = any(r["mode"] == "window" and "steps_per_s" in r for r in rows)
    if windows and plot(rows, figure, machine_line(info)):
        written.append(figure)
    publish(args, written, COMMITTED)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
