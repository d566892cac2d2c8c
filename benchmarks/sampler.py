"""Windows per second of the training samplers at a short and a long K, batch 64.

Runs on a synthetic D4RL-sized dataset (hopper shapes, 200 episodes of 1000 steps; K = 20
and K = 1000) and, when it is on disk, on zoo/hopper/medium-v0 (MINARI_DATASETS_PATH, else
../shared/datasets). Prints a table and writes sampler.json to --out (default
benchmarks/out/); the committed benchmarks/results/sampler.json changes only with
--update-committed. Takes well under 30 s.

    python benchmarks/sampler.py
    python benchmarks/sampler.py --smoke --out /tmp/s   # a second: tiny dataset, no hopper
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from harness import RESULTS, ROOT, add_common_args, publish, resolve_profile, write_json
from synthetic import synthetic_dataset

from flowrl.data import EpisodeDataset, EpisodeSampler, WindowSampler, load_dataset
from flowrl.errors import UserError
from flowrl.experiments.hostinfo import machine

JSON_NAME = "sampler.json"
COMMITTED = {JSON_NAME: RESULTS / JSON_NAME}
SHARED = ROOT.parent / "shared" / "datasets"
HOPPER = "zoo/hopper/medium-v0"
PROFILES = {
    "full": {"episodes": 200, "episode_len": 1000, "windows": [20, 1000], "batch": 64,
             "budget": 0.6, "hopper": True},
    "smoke": {"episodes": 4, "episode_len": 40, "windows": [5, 40], "batch": 4,
              "budget": 0.0, "hopper": False},
}  # fmt: skip


def hopper() -> EpisodeDataset | None:
    """zoo/hopper/medium-v0 where it is on disk, else None."""
    if "MINARI_DATASETS_PATH" not in os.environ and SHARED.is_dir():
        os.environ["MINARI_DATASETS_PATH"] = str(SHARED)
    try:
        return load_dataset(HOPPER)
    except UserError:
        return None


def time_per_call(fn: Callable[[], object], budget_s: float) -> float:
    """Median seconds per call over ~budget_s (at least 5 calls), after a warm-up call."""
    fn()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(dataset: EpisodeDataset, args: argparse.Namespace) -> list[dict]:
    """One row per sampler: window at each K, episode padded and packed at the longest."""
    common = {"batch_size": args.batch, "seed": 0}
    longest = max(args.windows)
    cases = [
        *(("window", K, WindowSampler(dataset, context_len=K, **common).sample)
          for K in args.windows),
        ("episode padded", longest, EpisodeSampler(dataset, max_len=longest, **common).sample),
        ("episode packed", longest,
         EpisodeSampler(dataset, max_len=longest, **common).sample_packed),
    ]  # fmt: skip
    rows = []
    for mode, K, fn in cases:
        seconds = time_per_call(fn, args.budget)
        rows.append(
            {
                "dataset": dataset.name,
                "mode": mode,
                "K": K,
                "batch": args.batch,
                "ms_per_batch": 1e3 * seconds,
                "windows_per_s": args.batch / seconds,
                "batches_per_s": 1 / seconds,
            }
        )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", help="window K (20 1000)")
    parser.add_argument("--batch", type=int, help="windows per batch (64)")
    add_common_args(parser, list(COMMITTED.values()), quick=False)
    return resolve_profile(parser, parser.parse_args(argv), PROFILES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    datasets = [synthetic_dataset(args.episodes, args.episode_len)]
    real = hopper() if args.hopper else None
    if real is not None:
        datasets.append(real)
    rows = [row for dataset in datasets for row in bench(dataset, args)]
    lines = [f"{'dataset':<24} {'mode':<15} {'K':>5} {'ms/batch':>9} {'windows/s':>11}"
             f" {'batches/s':>10}"]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r['dataset']:<24} {r['mode']:<15} {r['K']:>5} {r['ms_per_batch']:>9.3f} "
            f"{r['windows_per_s']:>11,.0f} {r['batches_per_s']:>10,.0f}"
        )
    text = "\n".join(lines)
    print(text)
    config = {key: getattr(args, key) for key in PROFILES["full"]}
    payload = {"machine": info, "config": {"profile": args.profile, **config},
               "results": rows, "table": text}  # fmt: skip
    publish(args, [write_json(args, JSON_NAME, payload)], COMMITTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
