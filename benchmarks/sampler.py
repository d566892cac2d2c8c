"""Windows per second of the training samplers, K = 20 and K = 1000, batch 64.

Runs on a synthetic D4RL-sized dataset (hopper shapes, 200 episodes of 1000 steps) and, when
it is on disk, on zoo/hopper/medium-v0 (MINARI_DATASETS_PATH, else ../shared/datasets).
Prints a table and writes benchmarks/results/sampler.json. Takes well under 30 s.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from synthetic import synthetic_dataset

from flowrl.data import EpisodeDataset, EpisodeSampler, WindowSampler, load_dataset
from flowrl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64
SHARED = ROOT.parent / "shared" / "datasets"


def hopper() -> EpisodeDataset | None:
    if "MINARI_DATASETS_PATH" not in os.environ and SHARED.is_dir():
        os.environ["MINARI_DATASETS_PATH"] = str(SHARED)
    try:
        return load_dataset("zoo/hopper/medium-v0")
    except UserError:
        return None


def time_per_call(fn: Callable[[], object], budget_s: float = 0.6) -> float:
    """Median seconds per call over ~budget_s, after a warm-up call."""
    fn()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(dataset: EpisodeDataset) -> list[dict]:
    rows = []
    common = {"batch_size": BATCH, "seed": 0}
    cases = [
        ("window", 20, WindowSampler(dataset, context_len=20, **common).sample),
        ("window", 1000, WindowSampler(dataset, context_len=1000, **common).sample),
        ("episode padded", 1000, EpisodeSampler(dataset, max_len=1000, **common).sample),
        ("episode packed", 1000, EpisodeSampler(dataset, max_len=1000, **common).sample_packed),
    ]
    for mode, k, fn in cases:
        seconds = time_per_call(fn)
        rows.append(
            {
                "dataset": dataset.name,
                "mode": mode,
                "K": k,
                "batch": BATCH,
                "ms_per_batch": 1e3 * seconds,
                "windows_per_s": BATCH / seconds,
                "batches_per_s": 1 / seconds,
            }
        )
    return rows


def main() -> None:
    datasets = [synthetic_dataset(200, 1000)]
    real = hopper()
    if real is not None:
        datasets.append(real)
    rows = [row for dataset in datasets for row in bench(dataset)]
    print(
        f"{'dataset':<22} {'mode':<15} {'K':>5} {'ms/batch':>9} {'windows/s':>11} {'batches/s':>10}"
    )
    for r in rows:
        print(
            f"{r['dataset']:<22} {r['mode']:<15} {r['K']:>5} {r['ms_per_batch']:>9.3f} "
            f"{r['windows_per_s']:>11,.0f} {r['batches_per_s']:>10,.0f}"
        )
    out = ROOT / "benchmarks" / "results" / "sampler.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
