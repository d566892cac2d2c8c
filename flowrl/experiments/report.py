"""Group runs by config keys and summarise a metric per group: the rows of a results table."""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from flowrl.errors import UserError
from flowrl.experiments import stats
from flowrl.experiments.runs import Run, note

# Keys that differ between runs of one setting, so never a default grouping key.
PER_RUN_KEYS = ("seed", "name", "out_dir")
TASK_KEY = "data.dataset"
DEFAULT_METRICS = ("eval/normalized_mean_last", "eval/normalized_mean_best")


@dataclass
class Group:
    label: dict[str, Any]  # {'model.attention': 'flow'}
    runs: list[Run]

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.label.items()) or "all runs"


def default_keys(runs: list[Run]) -> list[str]:
    """Config keys whose values differ between runs (seed, name and out_dir aside)."""
    keys = sorted({key for run in runs for key in run.config})
    return [
        key
        for key in keys
        if key not in PER_RUN_KEYS
        and len({json.dumps(run.config.get(key), sort_keys=True) for run in runs}) > 1
    ]


def group_runs(runs: list[Run], keys: list[str] | None) -> list[Group]:
    """Runs grouped by their values of `keys` (default: the keys that differ)."""
    keys = default_keys(runs) if keys is None else keys
    known = {key for run in runs for key in run.config}
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"--by {key}: no run has this config key{hint}")
    groups: dict[str, Group] = {}
    for run in runs:
        label = {key: run.config.get(key) for key in keys}
        groups.setdefault(
            json.dumps(label, sort_keys=True, default=str), Group(label, [])
        ).runs.append(run)
    return list(groups.values())


def finite_groups(groups: list[Group], metric: str) -> tuple[list[Group], list[str]]:
    """The groups without the runs that logged a NaN or infinite value of `metric`, and a
    note naming each run left out and the value."""
    kept, notes = [], []
    for group in groups:
        runs = []
        for run in group.runs:
            bad = [
                (s, v) for s, v in sorted(run.metrics.get(metric, {}).items()) if not np.isfinite(v)
            ]
            if bad:
                step, value = bad[0]
                notes.append(
                    f"run {run.path} left out of {group.name}: {metric} is {value} at step {step}"
                )
            else:
                runs.append(run)
        kept.append(Group(group.label, runs))
    return kept, notes


def task_scores(group: Group, metric: str) -> dict[str, np.ndarray]:
    """Each run's final value of `metric`, per task (dataset)."""
    tasks: dict[str, list[float]] = {}
    for run in group.runs:
        value = run.final(metric)
        if value is not None:
            tasks.setdefault(str(run.config.get(TASK_KEY, "")), []).append(value)
    return {task: np.array(values) for task, values in tasks.items()}


def finished(run: Run, metric: str) -> bool:
    """Whether the run logged `metric` at its configured last step (`steps`)."""
    points = run.metrics.get(metric)
    steps = run.config.get("steps")
    return bool(points) and (not isinstance(steps, int) or max(points) >= steps)


@dataclass
class Row:
    group: str
    label: dict[str, Any]
    metric: str
    n: int
    tasks: int
    mean: float
    std: float
    median: float
    iqm: float
    iqm_low: float
    iqm_high: float


def summarise(groups: list[Group], metrics: list[str], *, reps: int, seed: int) -> list[Row]:
    rows = []
    for metric in metrics:
        found = False
        finite, notes = finite_groups(groups, metric)
        for text in notes:
            note(text)
        for group in finite:
            tasks = task_scores(group, metric)
            missing = len(group.runs) - sum(len(v) for v in tasks.values())
            if missing:
                note(f"{missing} run(s) of {group.name} never logged {metric}")
            if not tasks:
                continue
            found = True
            unfinished = [run.path.name for run in group.runs if not finished(run, metric)]
            if unfinished:
                note(
                    f"{len(unfinished)} run(s) of {group.name} have not logged {metric} "
                    f"at their last step yet: {', '.join(unfinished)}"
                )
            scores = stats.pooled(list(tasks.values()))
            low, high = stats.interval(list(tasks.values()), stats.iqm, reps=reps, seed=seed)
            rows.append(
                Row(
                    group=group.name,
                    label=group.label,
                    metric=metric,
                    n=len(scores),
                    tasks=len(tasks),
                    mean=float(scores.mean()),
                    std=float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
                    median=float(np.median(scores)),
                    iqm=float(stats.iqm(scores)),
                    iqm_low=low,
                    iqm_high=high,
                )
            )
        if not found:
            keys = sorted(
                {k for g in groups for r in g.runs for k in r.metrics if k.startswith("eval/")}
            )
            found_keys = ", ".join(keys) or "none"
            left = " with finite values" if notes else ""
            raise UserError(
                f"--metric {metric}: no run logged it{left} (eval metrics: {found_keys})"
            )
    return rows


@dataclass
class Improvement:
    x: str
    y: str
    metric: str
    probability: float
    low: float
    high: float


def improvements(groups: list[Group], metric: str, *, reps: int, seed: int) -> list[Improvement]:
    """P(X > Y) with its CI for every pair of groups, on the tasks both have (runs with NaN or
    infinite values left out, as in `summarise`)."""
    out = []
    groups, _ = finite_groups(groups, metric)
    for i, gx in enumerate(groups):
        for gy in groups[i + 1 :]:
            tx, ty = task_scores(gx, metric), task_scores(gy, metric)
            common = sorted(set(tx) & set(ty))
            if not common:
                continue
            x, y = [tx[t] for t in common], [ty[t] for t in common]
            low, high = stats.improvement_interval(x, y, reps=reps, seed=seed)
            out.append(
                Improvement(
                    gx.name, gy.name, metric, stats.probability_of_improvement(x, y), low, high
                )
            )
    return out


# ---------------------------------------------------------------- output formats
COLUMNS = ("metric", "n", "mean", "std", "median", "IQM", "IQM 95% CI")


def _number(value: float) -> str:
    """One decimal for scores and returns, three significant digits for small values."""
    if np.isnan(value):
        return "n/a"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _cells(row: Row, keys: list[str]) -> list[str]:
    return [
        *(str(row.label[k]) for k in keys),
        row.metric.removeprefix("eval/"),
        str(row.n),
        *(_number(v) for v in (row.mean, row.std, row.median, row.iqm)),
        f"[{_number(row.iqm_low)}, {_number(row.iqm_high)}]",
    ]


def table(rows: list[Row], keys: list[str], *, markdown: bool = False) -> str:
    header = [*(keys or ["group"]), *COLUMNS]
    body = [_cells(row, keys) if keys else [row.group, *_cells(row, keys)] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    numeric = len(keys or ["group"]) + 1  # columns from n on are right-aligned

    def line(cells):
        return "  ".join(
            c.rjust(w) if i >= numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in body])


def improvement_lines(items: list[Improvement]) -> str:
    return "\n".join(
        f"P({i.x} > {i.y}) on {i.metric.removeprefix('eval/')}: {i.probability:.2f} "
        f"[{i.low:.2f}, {i.high:.2f}]"
        for i in items
    )


def to_csv(rows: list[Row], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = ["metric", "n", "tasks", "mean", "std", "median", "iqm", "iqm_low", "iqm_high"]
    writer.writerow([*keys, *fields] if keys else ["group", *fields])
    for row in rows:
        first = [row.label[k] for k in keys] if keys else [row.group]
        writer.writerow([*first, *(getattr(row, f) for f in fields)])
    return buffer.getvalue().rstrip("\n")


def to_json(rows: list[Row], keys: list[str], items: list[Improvement]) -> str:
    def clean(value):
        return None if isinstance(value, float) and np.isnan(value) else value

    data = {
        "by": keys,
        "groups": [{k: clean(v) for k, v in asdict(row).items()} for row in rows],
        "probability_of_improvement": [asdict(i) for i in items],
    }
    return json.dumps(data, indent=1)
