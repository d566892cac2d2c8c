"""The memory benchmarks (docs/long-context.md): collect, train, evaluate longer, report.

A task is the T-Maze (passive or active; its length L is the corridor) or MiniGrid-Memory
(its length is the grid size S: the room's object is S - 3 steps from the end corridor).
For each length it collects
a mixed-quality dataset (`collect_dataset`), trains every variant over several seeds (one
sweep per length and variant, `run_grid` in a child process of its own), evaluates the
episode-context flow agents where the corridor or hallway is several times longer than
trained (`evaluate` with longer env kwargs, acting through the recurrent state), and writes
a table, a JSON file and a figure of success rate against length per variant.
`flowrl bench memory` is its command line; its tasks and variants are the tables of
`memory_benchmark.yaml` (`memory_tables.py` reads them).

Success rate is the evaluation's normalised score: both tasks' reference returns are 0 and
1, so it is 100 x the mean return: for a T-Maze agent on schedule the % of correct turns;
for MiniGrid-Memory the % of matches less the small step penalty of the env's reward.
"""

from __future__ import annotations

import argparse
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flowrl.agents import load_agent
from flowrl.data import collect_dataset
from flowrl.errors import Interrupted, UserError
from flowrl.eval import evaluate
from flowrl.experiments import stats
from flowrl.experiments.grid import parse_seeds
from flowrl.experiments.runs import find_runs
from flowrl.experiments.sweep import run_grid
from flowrl.files import write_atomic
from flowrl.studies.memory_tables import Task, read_tables
from flowrl.train.child import join_passing_sigterm, start_child
from flowrl.train.interrupt import StopOnSignal

TABLES = read_tables()  # memory_benchmark.yaml: the tasks and the variants
TASKS, VARIANTS, RENAMED_VARIANTS = TABLES.tasks, TABLES.variants, TABLES.renamed
METRIC = "eval/normalized_mean_last"


def check_args(args: argparse.Namespace) -> None:
    """A UserError naming the first option of `flowrl bench memory` that cannot run, before
    anything is collected or trained: counts positive, lengths and multiples distinct,
    seeds readable, the JSON and figure writable files (the figure in a format matplotlib
    writes, the JSON not another task's results), and no dataset under a length's id that
    holds another number of episodes than --dataset-episodes asks for."""
    from flowrl.experiments.grid import parse_seeds

    counts = {
        "--jobs": [args.jobs], "--steps": [args.steps], "--episodes": [args.episodes],
        "--dataset-episodes": [args.dataset_episodes], "--reps": [args.reps],
        "--softmax-episode-max": [args.softmax_episode_max], "--lengths": args.lengths,
        "--generalise": args.generalise,
    }  # fmt: skip
    for flag, values in counts.items():
        for value in values:
            if value <= 0:
                raise UserError(f"{flag} {value}: expected a positive integer")
        if (twice := next((v for i, v in enumerate(values) if v in values[:i]), None)) is not None:
            raise UserError(f"{flag}: {twice} is given twice")
    if args.acting_eps is not None and not args.acting_eps > 0:
        raise UserError(f"--acting-eps {args.acting_eps}: expected a number > 0")
    parse_seeds(args.seeds)
    check_output(args.json, "--json")
    check_output(args.figure, "--figure")
    formats = _figure_formats()
    if args.figure.suffix[1:].lower() not in formats:
        raise UserError(
            f"--figure {args.figure}: expected a file ending in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    if args.json.is_file():
        try:
            task = json.loads(args.json.read_text()).get("task")
        except (ValueError, AttributeError, UnicodeDecodeError):
            task = None
        if task != args.task:
            holds = f"the results of task {task!r}" if task else "something else"
            raise UserError(
                f"--json {args.json} holds {holds}, not of --task {args.task}: "
                "name another --json (or remove it)"
            )
    if not args.report_only:
        task = TASKS[args.task]
        for length in args.lengths:
            held = collected_episodes(task.dataset_id(length))
            if held is not None and held != args.dataset_episodes:
                raise UserError(
                    f"dataset {task.dataset_id(length)} holds {held} episodes, "
                    f"--dataset-episodes asks for {args.dataset_episodes}: remove it "
                    "(flowrl datasets list shows where) or ask for its size"
                )


def check_output(path: Path, flag: str) -> None:
    """A UserError unless `path` can be written as a file (checked by opening it to append;
    a file that did not exist is removed again)."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected a file")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write it: {err.strerror or err}") from None
    if not existed:
        path.unlink()


def _figure_formats() -> set[str]:
    from matplotlib.figure import Figure

    return set(Figure().canvas.get_supported_filetypes())


def collected_episodes(dataset_id: str) -> int | None:
    """Episodes of the local Minari dataset `dataset_id` by its metadata; None if there is
    none (or its metadata cannot be read: loading it names the damage)."""
    from flowrl.data.minari_source import minari_root

    path = minari_root() / dataset_id / "data" / "metadata.json"
    try:
        return int(json.loads(path.read_text())["total_episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def collect(task: Task, length: int, episodes: int) -> None:
    from flowrl.data.minari_source import minari_root

    if (minari_root() / task.dataset_id(length)).exists():
        return
    collect_dataset(
        task.env_id, task.policy, episodes=episodes, dataset_id=task.dataset_id(length),
        seed=0, env_kwargs=task.collect_kwargs(length), progress=False,
    )  # fmt: skip


def longest_episode(dataset_ids: list[str], stretch: tuple[int, ...] = ()) -> int:
    """Steps of the longest episode in the datasets, stretched by the factors: an episode
    context must hold it."""
    from flowrl.data import load_dataset
    from flowrl.data.stretch import stretch_dataset

    return max(
        int(stretch_dataset(load_dataset(name), list(stretch)).lengths.max())
        for name in dataset_ids
    )


def sweep_folder(out: Path, task: str, length: int, variant: str) -> Path:
    """The sweep folder of `variant` at `length`: the one under the variant's old name when
    only that one is there (runs from before the rename)."""
    folder = out / f"{task}-L{length}-{variant}"
    for old in (old for old, new in RENAMED_VARIANTS.items() if new == variant):
        former = out / f"{task}-L{length}-{old}"
        if former.is_dir() and not folder.is_dir():
            return former
    return folder


def stopped(signum: int) -> Interrupted:
    """What `run` raises once signal `signum` stopped its sweeps (each saved its runs)."""
    return Interrupted(
        signum,
        f"stopped by {signal.Signals(signum).name}: the sweeps saved their runs where they "
        "were; run the same command again to resume them",
    )


def sweep(args: argparse.Namespace, length: int, variant: str, stop: StopOnSignal) -> Path:
    """Trains one variant at one length over the seeds; returns the sweep folder. A signal
    that `stop` caught stops it, before it starts or through its child."""
    if stop.requested:
        raise stopped(stop.signum)
    setup = VARIANTS[variant]
    task = TASKS[args.task]
    name = sweep_folder(args.out, args.task, length, variant).name
    lengths = [x for x in sorted(args.lengths) if x <= length] if setup.multilength else [length]
    datasets = [task.dataset_id(x) for x in lengths]
    horizon = longest_episode(datasets, setup.stretch)
    overrides = [
        f"data.dataset={'+'.join(datasets)}",  # evaluated in the last one's env
        f"model.attention={setup.attention}", f"model.context_mode={setup.context}",
        f"model.context_len={setup.window or horizon}", f"steps={args.steps}",
        f"eval.episodes={args.episodes}", f"eval.num_envs={min(args.episodes, 50)}",
        *setup.settings, *([f"data.stretch={list(setup.stretch)}"] if setup.stretch else []),
    ]  # fmt: skip
    log = args.out / "logs" / f"{name}.log"
    # a child of its own: the sweep handles the signals that reach it (a Ctrl-C of the
    # terminal, as this process is in its group), which Python allows its main thread only
    child = start_child(
        run_grid, (args.out / name).resolve(), str(args.config), overrides, {},
        parse_seeds(args.seeds), progress=False, log=log, prog=f"sweep {name}",
    )  # fmt: skip
    join_passing_sigterm(child, stop)
    if stop.requested:
        raise stopped(stop.signum)
    if child.exitcode != 0:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-20:])
        raise UserError(f"sweep {name} failed (exit {child.exitcode}), log {log}:\n{tail}")
    return args.out / name


def generalise(args: argparse.Namespace, run: Path, length: int, factor: int) -> float:
    """Success (%) of a trained run where the corridor is `factor` times longer than it
    trained on (acting with eps `args.acting_eps` where one is given)."""
    task = TASKS[args.task]
    eps = "" if args.acting_eps is None else f"-eps{args.acting_eps:g}"
    name = f"{run.parent.parent.name}-{run.name}-x{factor}{eps}.json"
    out = args.out / "generalisation" / name
    if not out.is_file():
        checkpoint = run / "checkpoints" / "last.pt"
        env_kwargs = task.longer_kwargs(length, factor)
        agent = load_agent(checkpoint)
        if args.acting_eps is not None:
            agent.model.set_attention_eps(args.acting_eps)
        (result,) = evaluate(
            agent, target_returns=[1.0], episodes=args.episodes,
            num_envs=min(args.episodes, 50), env_kwargs=env_kwargs,
            max_steps=4 * task.longer(length, factor) + 100,  # a T-Maze runs to its end
            seed=20_000,
        )  # fmt: skip
        record = {  # its targets as `flowrl eval --json` writes them
            "checkpoint": str(checkpoint),
            "env_kwargs": env_kwargs,
            "attention_eps": agent.model.cfg.attention_eps,
            "targets": {f"{result.target_return:g}": result.summary()},
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(record, indent=2) + "\n")
    (target,) = json.loads(out.read_text())["targets"].values()  # the one target, 1
    return float(target["normalized_mean"])


def summary(scores: list[float], runs: list, reps: int) -> dict:
    """Mean, bootstrap CI and the runs' scores, with the training steps the runs took."""
    x = np.asarray(scores, float)
    low, high = stats.interval([x], stats.mean, reps=reps)
    steps = sorted({int(run.config["steps"]) for run in runs})
    return {"n": len(x), "mean": float(x.mean()), "ci95": [low, high], "runs": x.tolist(),
            "steps": steps}  # fmt: skip


def plot(results: dict, lengths: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = TASKS[results["task"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ticks = set(lengths)
    for i, (variant, by_length) in enumerate(results["trained"].items()):
        color = colors[i % len(colors)]
        xs = [L for L in lengths if str(L) in by_length]
        means = np.array([by_length[str(L)]["mean"] for L in xs])
        cis = np.array([by_length[str(L)]["ci95"] for L in xs]).reshape(-1, 2)
        ax.errorbar(xs, means, yerr=[means - cis[:, 0], cis[:, 1] - means], marker="o",
                    capsize=3, color=color, label=variant)  # fmt: skip
        by_factor = results["generalisation"].get(variant, {})
        for L, mean in zip(xs, means, strict=True):  # the same agents in longer corridors
            factors = sorted(int(f) for f, by in by_factor.items() if str(L) in by)
            ys = [mean] + [by_factor[str(f)][str(L)]["mean"] for f in factors]
            longer = [task.longer(L, f) for f in factors]
            ticks.update(longer)
            ax.plot([L, *longer], ys, linestyle="--", marker="x", color=color)
    ax.plot([], [], linestyle="--", marker="x", color="grey",
            label="same agents, 2x, 5x, 10x longer")  # fmt: skip
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    labelled = set(lengths)  # trained lengths, then others not crowding a labelled one
    for x in sorted(ticks - labelled):
        if all(max(x, y) / min(x, y) >= 1.3 for y in labelled):
            labelled.add(x)
    labels = [str(x) if x in labelled else "" for x in sorted(ticks)]
    ax.set_xticks(sorted(ticks), labels, fontsize=8)  # those run only
    ax.minorticks_off()
    ax.set_xlabel(task.axis)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(f"{results['task']}: seeds {results['seeds']}, "
                 f"{results['steps']} steps; mean, 95% bootstrap CI", fontsize=10)  # fmt: skip
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    """The whole grid of `args` (`flowrl bench memory`'s options): collects, trains and
    evaluates what is missing (nothing with `args.report_only`), then writes the JSON
    (`args.json`) and figure (`args.figure`) and prints the table. Returns the results."""
    jobs = [
        (length, variant)
        for length in args.lengths
        for variant in args.variants
        if not (variant == "softmax-episode" and length > args.softmax_episode_max)
        and not (
            VARIANTS[variant].multilength and length == min(args.lengths)
        )  # same data as flow-episode
    ]
    if args.report_only:
        folders = {job: sweep_folder(args.out, args.task, *job) for job in jobs}
        folders = {job: folder for job, folder in folders.items() if folder.is_dir()}
    else:
        for length in args.lengths:
            collect(TASKS[args.task], length, args.dataset_episodes)
        # each sweep runs its seeds one by one; signals are caught here, in the main thread
        with StopOnSignal() as stop, ThreadPoolExecutor(args.jobs) as pool:
            trained = pool.map(lambda job: sweep(args, *job, stop), jobs)
            folders = dict(zip(jobs, trained, strict=True))

    results: dict = {"task": args.task, "seeds": args.seeds, "steps": args.steps,
                     "machine": args.machine, "acting_eps": args.acting_eps,
                     "trained": {}, "generalisation": {}}  # fmt: skip
    rows = []
    finished = {job: [r for r in find_runs([f]) if r.final(METRIC) is not None]
                for job, f in folders.items()}  # fmt: skip
    for (length, variant), runs in finished.items():
        if not runs:
            continue
        entry = summary([run.final(METRIC) for run in runs], runs, args.reps)
        results["trained"].setdefault(variant, {})[str(length)] = entry
        rows.append((variant, f"L={length}", entry))
    for (length, variant), done in finished.items():
        if not VARIANTS[variant].recurrent or not done:
            continue
        for factor in args.generalise:
            scores = [generalise(args, run.path, length, factor) for run in done]
            entry = summary(scores, done, args.reps)
            by_factor = results["generalisation"].setdefault(variant, {})
            by_factor.setdefault(str(factor), {})[str(length)] = entry
            longer = TASKS[args.task].longer(length, factor)
            rows.append((variant, f"L={length} -> {longer}", entry))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    plot(results, args.lengths, args.figure)
    header = f"{'variant':<30} {'corridor':<18} {'steps':>5} {'n':>2} {'success %':>9}"
    print(f"\n{header}  95% CI      runs")
    for variant, where, e in rows:
        low, high = e["ci95"]
        runs = " ".join(f"{r:.0f}" for r in e["runs"])
        steps = "/".join(str(x) for x in e["steps"])
        print(f"{variant:<30} {where:<18} {steps:>5} {e['n']:>2} {e['mean']:>9.1f}  "
              f"[{low:.0f}, {high:.0f}]  {runs}")  # fmt: skip
    print(f"\nJSON: {args.json}\nfigure: {args.figure}")

    return results
