"""IQM, stratified-bootstrap intervals and the probability of improvement on hand-computed
cases, where a wrong definition (no trimming, unstratified resampling, ties) gives another
number."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.experiments import stats


def test_iqm_drops_a_quarter_at_each_end():
    # 8 scores: drop 2 at each end, mean of 3, 4, 5, 6
    assert stats.iqm(np.array([100.0, 1, 7, 3, 5, 4, 6, 2])) == pytest.approx(4.5)
    # 5 scores: floor(5/4) = 1 dropped at each end: mean of 3, 7, 10
    assert stats.iqm(np.array([10.0, 1, 7, 3, 100])) == pytest.approx(20 / 3)
    # 3 scores: nothing dropped, the mean
    assert stats.iqm(np.array([1.0, 2, 9])) == pytest.approx(4.0)
    # along the last axis, row by row
    rows = np.array([[1.0, 2, 3, 4], [8, 0, 0, 8]])
    np.testing.assert_allclose(stats.iqm(rows), [2.5, 4.0])


def test_bootstrap_interval_of_two_runs_spans_them():
    # resamples of [a, b]: (a, a) 1/4, (a, b) 1/2, (b, b) 1/4, so the 2.5 and 97.5 percentiles
    # of the resampled means are a and b
    low, high = stats.interval([np.array([3.0, 11.0])], stats.iqm, reps=4000, seed=1)
    assert (low, high) == (3.0, 11.0)


def test_bootstrap_is_stratified_by_task():
    # each task's runs are resampled within the task: every resample has two 0s and two 10s,
    # so the mean never moves; resampling the pooled runs would spread it over [0, 10]
    tasks = [np.array([0.0, 0.0]), np.array([10.0, 10.0])]
    assert stats.interval(tasks, stats.mean, reps=2000, seed=0) == (5.0, 5.0)
    # the one run of task 2 (7) is in every resample once: means stay in [(3 + 7) / 4, (9 + 7) / 4]
    tasks = [np.array([1.0, 2.0, 3.0]), np.array([7.0])]
    draws = stats.stratified_bootstrap(tasks, stats.mean, reps=3000, rng=np.random.default_rng(0))
    assert draws.shape == (3000,)
    assert draws.min() == 2.5 and draws.max() == 4.0


def test_interval_matches_a_plain_bootstrap_loop():
    rng = np.random.default_rng(5)
    tasks = [rng.normal(50, 10, 5), rng.normal(20, 5, 4)]
    low, high = stats.interval(tasks, stats.iqm, reps=20_000, seed=3)
    # the same procedure written out: resample each task's runs, pool, trim a quarter each end
    loop = np.random.default_rng(11)
    values = []
    for _ in range(4000):
        sample = np.sort(np.concatenate([t[loop.integers(0, len(t), len(t))] for t in tasks]))
        values.append(sample[2:-2].mean())  # 9 scores: floor(9/4) = 2 dropped at each end
    expected = np.percentile(values, [2.5, 97.5])
    spread = expected[1] - expected[0]
    assert low == pytest.approx(expected[0], abs=0.05 * spread)
    assert high == pytest.approx(expected[1], abs=0.05 * spread)


def test_probability_of_improvement_by_hand():
    # task 1: pairs (5,1) 1, (5,5) tie 1/2, (5,7) 0, (6,1) 1, (6,5) 1, (6,7) 0 -> 3.5 / 6
    # task 2: every run of x beats every run of y -> 1
    x = [np.array([5.0, 6.0]), np.array([9.0, 8.0])]
    y = [np.array([1.0, 5.0, 7.0]), np.array([2.0])]
    assert stats.probability_of_improvement(x, y) == pytest.approx((3.5 / 6 + 1.0) / 2)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - (3.5 / 6 + 1.0) / 2)
    # when x always wins, every resample says so
    assert stats.improvement_interval([np.array([5.0, 6])], [np.array([1.0, 2])], reps=500) == (
        1.0,
        1.0,
    )
    low, high = stats.improvement_interval(x, y, reps=5000)
    assert low < stats.probability_of_improvement(x, y) < high
