"""Aggregate statistics over runs, as rliable defines them (Agarwal et al., NeurIPS 2021).

Scores come per task: a list with one 1-D array of run scores per task (runs may differ in
number between tasks). Aggregates pool every run of every task; confidence intervals come
from the stratified bootstrap (runs resampled with replacement within each task) with the
percentile method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TaskScores = Sequence[np.ndarray]
CHUNK = 2000  # bootstrap replicates evaluated at once (bounds memory)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean after dropping floor(n/4) scores at
    each end (scipy.stats.trim_mean(x, 0.25), what rliable uses)."""
    scores = np.sort(np.asarray(scores, float), axis=-1)
    n = scores.shape[-1]
    cut = int(0.25 * n)
    return scores[..., cut : n - cut].mean(axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores, float).mean(axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    return np.median(np.asarray(scores, float), axis=-1)


def pooled(tasks: TaskScores) -> np.ndarray:
    return np.concatenate([np.asarray(t, float) for t in tasks])


def stratified_bootstrap(
    tasks: TaskScores,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    reps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """`reps` values of `statistic` (over the last axis of pooled scores), each on a resample
    that draws every task's runs with replacement, as many as the task has."""
    values = []
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        draws = [np.asarray(t, float)[rng.integers(0, len(t), (size, len(t)))] for t in tasks]
        values.append(statistic(np.concatenate(draws, axis=1)))
    return np.concatenate(values)


def percentile_interval(values: np.ndarray, size: float = 0.95) -> tuple[float, float]:
    low, high = np.percentile(values, [50 * (1 - size), 50 * (1 + size)])
    return float(low), float(high)


def interval(
    tasks: TaskScores,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    reps: int = 50_000,
    size: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified-bootstrap percentile confidence interval of an aggregate."""
    rng = np.random.default_rng(seed)
    return percentile_interval(stratified_bootstrap(tasks, statistic, reps=reps, rng=rng), size)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) for one task, over the last axis of x (n runs) and y (m runs): the
    Mann-Whitney U statistic / (n m), ties counting one half."""
    greater = x[..., :, None] > y[..., None, :]
    equal = x[..., :, None] == y[..., None, :]
    return (greater + 0.5 * equal).mean(axis=(-2, -1))


def probability_of_improvement(x: TaskScores, y: TaskScores) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y on a task, averaged over tasks."""
    return float(
        np.mean(
            [
                _improvement(np.asarray(a, float), np.asarray(b, float))
                for a, b in zip(x, y, strict=True)
            ]
        )
    )


def improvement_interval(
    x: TaskScores, y: TaskScores, *, reps: int = 50_000, size: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Stratified-bootstrap CI of P(X > Y): X's and Y's runs resampled independently per task."""
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, reps, CHUNK):
        n = min(CHUNK, reps - start)
        per_task = []
        for a, b in zip(x, y, strict=True):
            a, b = np.asarray(a, float), np.asarray(b, float)
            xs = a[rng.integers(0, len(a), (n, len(a)))]
            ys = b[rng.integers(0, len(b), (n, len(b)))]
            per_task.append(_improvement(xs, ys))
        values.append(np.mean(per_task, axis=0))
    return percentile_interval(np.concatenate(values), size)
