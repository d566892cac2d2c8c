"""Figures of a set of runs: learning curves per task, the final metric per group (IQM with a
95% bootstrap CI), and a performance profile when there are several tasks. matplotlib's Agg
canvas, no pyplot state."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flowrl.errors import UserError
from flowrl.experiments import stats
from flowrl.experiments.report import TASK_KEY, Group, finite_groups, task_scores
from flowrl.experiments.runs import Run, note

FORMATS = (".png", ".svg", ".pdf")
STYLE = {
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",  # text stays text in SVG files
}


def describe(metric: str) -> str:
    """An axis label for a metric key."""
    name = metric.removeprefix("eval/")
    kind = "normalised score" if "normalized" in name else "return" if "return" in name else name
    if name.endswith("_last"):
        return f"{kind} (last evaluation)"
    if name.endswith("_best"):
        return f"{kind} (best evaluation so far)"
    return kind


def mean_curve(
    runs: list[Run], metric: str, band: str, *, reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Steps, mean over runs, and the band's low and high, on the steps every run reached."""
    curves = [run.curve(metric) for run in runs]
    curves = [(s, v) for s, v in curves if len(s)]
    if not curves:
        return None
    first, last = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    steps = steps[(steps >= first) & (steps <= last)]
    values = np.stack([np.interp(steps, s, v) for s, v in curves])  # (runs, steps)
    average = values.mean(0)
    if band == "std" and len(values) > 1:
        spread = values.std(0, ddof=1)
        return steps, average, average - spread, average + spread
    if band == "ci" and len(values) > 1:
        rng = np.random.default_rng(seed)
        draws = values[rng.integers(0, len(values), (reps, len(values)))].mean(1)
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        return steps, average, low, high
    return steps, average, average, average


def check_out(out: Path) -> None:
    """A UserError unless a figure can be written at `out`: a .png, .svg or .pdf file name
    whose existing ancestors are folders (checked before anything is computed)."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: expected a file name such as {out / 'fig.png'}")
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out {out}: expected a .png, .svg or .pdf file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out {out}: {parent} is a file, not a folder")
            break


def plot_runs(
    groups: list[Group],
    metric: str,
    out: Path,
    *,
    band: str = "std",
    reps: int = 2000,
    seed: int = 0,
) -> None:
    check_out(out)
    groups, notes = finite_groups(groups, metric)
    for text in notes:
        note(text)
    tasks = sorted({str(run.config.get(TASK_KEY, "")) for g in groups for run in g.runs})
    scores = [task_scores(g, metric) for g in groups]
    if not any(scores):
        raise UserError(f"--metric {metric}: no run logged it")
    panels = len(tasks) + 1 + (len(tasks) > 1)
    columns = min(panels, 3)
    rows = -(-panels // columns)
    label = describe(metric)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.8 * columns, 3.6 * rows), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax in axes[panels:]:
            ax.set_visible(False)
        for t, task in enumerate(tasks):
            ax = axes[t]
            for i, group in enumerate(groups):
                runs = [r for r in group.runs if str(r.config.get(TASK_KEY, "")) == task]
                curve = mean_curve(runs, metric, band, reps=reps, seed=seed)
                if curve is None:
                    continue
                steps, average, low, high = curve
                if len(steps) == 1:  # one evaluation per run (eval.every=0): a point
                    spread = [average - low, high - average]
                    ax.errorbar(steps, average, yerr=spread, color=f"C{i}", marker="o", capsize=4)
                    continue
                ax.plot(steps, average, color=f"C{i}", lw=1.8)
                ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.2, lw=0)
            ax.set(xlabel="training step", ylabel=label, title=task or "runs")
        _bars(axes[len(tasks)], groups, scores, label, reps=reps, seed=seed)
        if len(tasks) > 1:
            _profile(axes[len(tasks) + 1], groups, scores, label, reps=reps, seed=seed)
        bands = {"std": "shaded: ± 1 std over seeds", "ci": "shaded: 95% bootstrap CI of the mean"}
        title = "learning curves: mean over seeds"
        title += f" ({bands[band]})" if band in bands else ""
        fig.suptitle(title, fontsize=10)
        fig.legend(
            [Line2D([], [], color=f"C{i}", lw=1.8) for i in range(len(groups))],
            [_name(g) for g in groups],
            title=", ".join(groups[0].label) or None,
            loc="outside lower center",
            ncol=min(len(groups), 4),
            frameon=False,
        )
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=150)
        except OSError as err:
            raise UserError(f"--out {out}: {err.strerror or err}") from None


def _name(group: Group) -> str:
    return ", ".join(str(v) for v in group.label.values()) or "all runs"


def _bars(ax, groups, scores, label: str, *, reps: int, seed: int) -> None:
    """IQM of each group's final scores (all tasks pooled) with its 95% bootstrap CI."""
    for i, tasks in enumerate(scores):
        if not tasks:
            continue
        values = list(tasks.values())
        center = float(stats.iqm(stats.pooled(values)))
        low, high = stats.interval(values, stats.iqm, reps=reps, seed=seed)
        ax.bar(i, center, color=f"C{i}", alpha=0.8, width=0.6)
        ax.errorbar(i, center, yerr=[[center - low], [high - center]], color="black", capsize=4)
        points = stats.pooled(values)
        ax.scatter(np.full(len(points), i + 0.2), points, color="black", s=8, zorder=3)
    names = [_name(g) for g in groups]
    long = max(len(n) for n in names) > 12
    ax.set_xticks(
        range(len(groups)), names, rotation=20 if long else 0, ha="right" if long else "center"
    )
    ax.set(ylabel=label, title="final value: IQM, 95% CI (dots: runs)")
    ax.grid(axis="x", visible=False)


def _profile(ax, groups, scores, label: str, *, reps: int, seed: int) -> None:
    """rliable's score distribution: the fraction of runs scoring above tau, with a CI band."""
    everything = np.concatenate([stats.pooled(list(t.values())) for t in scores if t])
    taus = np.linspace(everything.min(), everything.max(), 101)

    def above(pooled: np.ndarray) -> np.ndarray:
        return (pooled[..., None] > taus).mean(axis=-2)

    for i, tasks in enumerate(scores):
        if not tasks:
            continue
        values = list(tasks.values())
        draws = stats.stratified_bootstrap(
            values, above, reps=reps, rng=np.random.default_rng(seed)
        )
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        ax.plot(taus, above(stats.pooled(values)), color=f"C{i}", lw=1.8)
        ax.fill_between(taus, low, high, color=f"C{i}", alpha=0.2, lw=0)
    ax.set(xlabel=f"final {label} τ", ylabel="fraction of runs > τ", title="performance profile")
