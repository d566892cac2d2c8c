"""The papers' budget on Hopper: the Decision Transformer trained at 100k steps on medium,
medium-replay and medium-expert, 3 seeds, `flow-relu` and softmax, one results table.

Two steps. `prep` (on any machine that has the data) packs the Minari Hopper datasets
(zoo/hopper/{medium,medium-replay,expert}-v0) into one xz-compressed file of about 50 MB,
which travels with the command to a machine without network. `run` unpacks it, trains every
run with `flowrl sweep` (the papers' settings, configs/base/decision-transformer.yaml: embed
256, 3 layers, 4 heads, K = 20, batch 64, lr 1e-3, 10k warmup), evaluates each with the
papers' protocol (targets 3600 and 1800, `--episodes` episodes each, vectorised), and
writes the table of `flowrl report` (per dataset and attention: runs, mean, std, median,
IQM with its 95% bootstrap CI, of the last and the best evaluation) to results.md in
--out, headed by the machine and the command, with each run's config.yaml and
metrics.jsonl (the datasets and checkpoints stay in --work).

    python benchmarks/papers_budget.py prep --source DIR             # DIR holds zoo/hopper/
    python benchmarks/papers_budget.py run --data FILE --out DIR     # GPU: the whole table
    python benchmarks/papers_budget.py run --data FILE --out DIR --smoke   # CPU, tiny, minutes

A run that reaches --budget seconds stops its sweep (each running run saves last.pt); the
same command again continues it where the sweep folder survives. --sets splits the table
into several commands (their sweep folders report together: `flowrl report A B`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness import DEFAULT_OUT, ROOT, add_common_args, resolve_profile

from flowrl.experiments.hostinfo import machine, machine_line

DATA_NAME = "hopper-minari.tar.xz"
DEFAULT_DATA = DEFAULT_OUT / "papers-budget" / DATA_NAME
PARTS = ("medium-v0", "medium-replay-v0", "expert-v0")  # the Minari folders under zoo/hopper/
SETS = {  # the table's datasets: Minari ids, medium-expert as the union of two
    "medium": "zoo/hopper/medium-v0",
    "medium-replay": "zoo/hopper/medium-replay-v0",
    "medium-expert": "zoo/hopper/medium-v0+zoo/hopper/expert-v0",
}
KINDS = ("flow-relu", "softmax")
TARGETS = "[3600,1800]"
MAX_PACKED_MB = 60.0
CONFIG = ROOT / "configs" / "base" / "decision-transformer.yaml"

PROFILES = {
    "full": {
        "steps": 100_000,
        "seeds": "0-2",
        "episodes": 10,
        "eval_every": 20_000,
        "max_steps": 1000,
        "jobs": 9,
        "device": "cuda",
        "tiny": [],
    },
    "smoke": {
        "steps": 12,
        "seeds": "0-1",
        "episodes": 2,
        "eval_every": 0,
        "max_steps": 10,
        "jobs": 2,
        "device": "cpu",
        "tiny": [
            "model.embed_dim=16",
            "model.n_layers=1",
            "model.n_heads=1",
            "model.context_len=5",
            "optim.batch_size=4",
            "optim.warmup_steps=2",
            "log_every=4",
            "checkpoint_every=6",
        ],
    },
}


# ------------------------------------------------------------------------------ prep
def prep(source: Path, out: Path) -> Path:
    """Packs source/zoo/hopper/{PARTS} (and the namespace files Minari keeps beside them)
    into `out`, xz-compressed, written atomically; a SystemExit naming what is missing."""
    hopper = source / "zoo" / "hopper"
    missing = [str(hopper / p / "data" / "main_data.hdf5") for p in PARTS]
    missing = [m for m in missing if not Path(m).is_file()]
    if missing:
        raise SystemExit(f"prep --source {source}: no Minari dataset at {', '.join(missing)}")
    members = [f"zoo/hopper/{p}" for p in PARTS]
    members += [m for m in ("zoo/namespace_metadata.json", "zoo/hopper/namespace_metadata.json")
                if (source / m).is_file()]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:xz") as tar:
        for member in members:
            tar.add(source / member, arcname=member)
    partial.replace(out)
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out}: {size_mb:.1f} MB ({', '.join(members)})")
    if size_mb > MAX_PACKED_MB:
        print(f"warning: over {MAX_PACKED_MB:.0f} MB, more than a device call carries")
    return out


def unpack(data: Path, into: Path) -> Path:
    """The packed datasets under `into` (a Minari datasets folder); unpacked once."""
    if not data.is_file():
        raise SystemExit(f"--data {data}: no such file; make it with `prep --source DIR`")
    done = into / ".unpacked"
    if done.is_file() and done.read_text() == str(data.stat().st_size):
        return into
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(data, "r:xz") as tar:
        tar.extractall(into, filter="data")
    done.write_text(str(data.stat().st_size))
    return into


# ------------------------------------------------------------------------------ run
def sweep_command(args: argparse.Namespace, sweeps: Path) -> list[str]:
    """The `flowrl sweep` of the table: every set x kind x seed, the papers' settings."""
    datasets = ",".join(SETS[s] for s in args.sets)
    settings = [
        f"steps={args.steps}",
        f"device={args.device}",
        f"eval.target_returns={TARGETS}",
        f"eval.episodes={args.episodes}",
        f"eval.num_envs={args.episodes}",  # every episode of a target at once
        f"eval.every={args.eval_every}",
        f"eval.max_steps={args.max_steps}",
        f"data.sampler={args.sampler}",
        *args.tiny,
        *args.set,
    ]
    cmd = [sys.executable, "-m", "flowrl", "sweep", "--config", str(CONFIG)]
    cmd += ["--grid", f"data.dataset={datasets}", "--grid", f"model.attention={','.join(KINDS)}"]
    cmd += ["--seeds", args.seeds, "--jobs", str(args.jobs), "--name", "papers-budget"]
    cmd += ["--out-dir", str(sweeps), "--no-progress"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for setting in settings:
        cmd += ["--set", setting]
    return cmd


def run_sweep(cmd: list[str], env: dict[str, str], budget: float) -> tuple[int, bool]:
    """Runs the sweep; at `budget` seconds it is sent SIGTERM (its runs save and stop).
    Returns its exit code and whether the budget stopped it."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        return proc.wait(timeout=budget), False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=120), True
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(), True


def report(sweep: Path, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "flowrl", "report", str(sweep)]
    cmd += ["--by", "data.dataset,model.attention", "--markdown"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return f"flowrl report failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return done.stdout


def keep_metrics(sweep: Path, into: Path) -> None:
    """Each run's config.yaml and metrics.jsonl (not its checkpoints) under `into`, enough
    for `flowrl report` and `flowrl plot` anywhere."""
    for run_dir in sorted((sweep / "runs").glob("*")):
        for name in ("config.yaml", "metrics.jsonl"):
            if (run_dir / name).is_file():
                (into / run_dir.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / name, into / run_dir.name / name)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    datasets = unpack(args.data, args.work / "datasets")
    env = {**os.environ, "MINARI_DATASETS_PATH": str(datasets.resolve())}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    sweep = args.work / "sweeps" / "papers-budget"
    cmd = sweep_command(args, sweep.parent)
    print("$ " + " ".join(cmd), flush=True)
    code, stopped = run_sweep(cmd, env, args.budget)
    seconds = time.monotonic() - started
    info = machine(torch_threads=args.threads or 1)
    status = f"stopped at --budget {args.budget:.0f} s" if stopped else f"sweep exit {code}"
    table = report(sweep, env)
    keep_metrics(sweep, args.out / "runs")
    text = "\n".join(
        [
            f"# Hopper at the papers' budget ({args.profile} profile)",
            "",
            f"machine: {machine_line(info)}",
            f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}",
            f"sweep: {len(args.sets)} sets x {len(KINDS)} kinds x seeds {args.seeds}, "
            f"{args.steps} steps, targets {TARGETS} x {args.episodes} episodes; "
            f"{seconds:.0f} s, {status}",
            "",
            table.rstrip(),
            "",
        ]
    )
    (args.out / "results.md").write_text(text)
    print(text + f"\nwrote {args.out / 'results.md'}")
    return 1 if stopped or code != 0 else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("prep", help="pack the Minari Hopper datasets into one file")
    packing.add_argument("--source", type=Path, required=True, help="a folder with zoo/hopper/")
    packing.add_argument("--out", type=Path, default=DEFAULT_DATA, help=f"({DEFAULT_DATA})")
    training = commands.add_parser("run", help="train, evaluate and tabulate")
    training.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prep's file")
    training.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    training.add_argument("--steps", type=int, help="training steps a run (100000)")
    training.add_argument("--seeds", help="seeds, e.g. 0-2 (default)")
    training.add_argument("--episodes", type=int, help="evaluation episodes per target (10)")
    training.add_argument("--eval-every", type=int, help="steps between evaluations (20000)")
    training.add_argument("--max-steps", type=int, help="evaluation episode limit (1000)")
    training.add_argument("--jobs", type=int, help="runs at a time (9)")
    training.add_argument("--threads", type=int, help="torch threads a run (sweep's default)")
    training.add_argument("--device", help="device of the runs (cuda; cpu with --smoke)")
    training.add_argument("--sampler", default="auto", help="data.sampler (auto)")
    training.add_argument("--budget", type=float, default=540.0, help="seconds (540)")
    training.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_OUT / "papers-budget" / "work",
        help="the unpacked datasets and the sweep with its checkpoints (not --out)",
    )
    training.add_argument(
        "--set", action="append", default=[], help="a further setting for every run"
    )
    add_common_args(training, [], quick=False, out=DEFAULT_OUT / "papers-budget")
    args = parser.parse_args(argv)
    if args.command == "run":
        args = resolve_profile(training, args, PROFILES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "prep":
        prep(args.source, args.out)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
