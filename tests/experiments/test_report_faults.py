"""`flowrl report` and `flowrl plot` on runs with NaN or infinite scores, damaged metrics
files, duplicate folders and single evaluations: what they leave out, and that they say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.experiments.conftest import flowrl, write_run
from tests.experiments.test_plot import BLUE, pixels_near

METRIC = "eval/normalized_mean_last"
NO_NUMPY_WARNINGS = {"PYTHONWARNINGS": "error::RuntimeWarning"}


def config(seed: int, attention: str = "flow", steps: int = 20) -> dict:
    return {
        "name": f"{attention}-{seed}",
        "seed": seed,
        "out_dir": "runs",
        "steps": steps,
        "data": {"dataset": "tests/a-v0"},
        "model": {"attention": attention},
    }


def scores(*values: float, every: int = 10) -> list[dict]:
    return [
        {"step": every * (i + 1), METRIC: v, "eval/normalized_mean_best": 5.0}
        for i, v in enumerate(values)
    ]


def only_notes(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert all(line.startswith("note: ") for line in lines), stderr
    return lines


@pytest.fixture
def faulty_runs(tmp_path) -> Path:
    """Five flow runs: two good (50, 70), one NaN, one infinite, one with a damaged line;
    and two good softmax runs."""
    runs = tmp_path / "runs"
    write_run(runs / "good-0", config(0), scores(10, 50))
    write_run(runs / "good-1", config(1), scores(20, 70))
    write_run(runs / "nan", config(2), scores(30, float("nan")))
    write_run(runs / "inf", config(3), scores(float("inf"), 80))
    write_run(runs / "garbled", config(4), scores(40, 60))
    lines = (runs / "garbled" / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, '{"step": 15, "eval/normalized_mean_last": 4')  # not the last line
    (runs / "garbled" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for seed in (0, 1):
        write_run(runs / f"softmax-{seed}", config(seed, "softmax"), scores(1, 2 + seed))
    return runs


def test_report_leaves_out_bad_runs_and_names_them(faulty_runs):
    done = flowrl("report", str(faulty_runs), "--json", "--reps", "200", env=NO_NUMPY_WARNINGS)
    assert done.returncode == 0, done.stderr
    rows = {
        (r["metric"], r["label"]["model.attention"]): r for r in json.loads(done.stdout)["groups"]
    }
    flow = rows[(METRIC, "flow")]
    assert flow["n"] == 2 and flow["mean"] == pytest.approx(60.0)
    assert rows[(METRIC, "softmax")]["n"] == 2
    assert rows[("eval/normalized_mean_best", "flow")]["n"] == 4  # inf and nan only in _last
    notes = "\n".join(only_notes(done.stderr))
    assert (
        f"{faulty_runs / 'nan'} left out of model.attention=flow: {METRIC} is nan at step 20"
        in notes
    )
    assert (
        f"{faulty_runs / 'inf'} left out of model.attention=flow: {METRIC} is inf at step 10"
        in notes
    )
    assert (
        f"run {faulty_runs / 'garbled'} left out: {faulty_runs / 'garbled'}/metrics.jsonl:2:"
        in notes
    )


def test_plot_leaves_out_bad_runs_without_warnings(faulty_runs, tmp_path):
    out = tmp_path / "fig.png"
    done = flowrl(
        "plot", str(faulty_runs), "--out", str(out), "--reps", "200", env=NO_NUMPY_WARNINGS
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and len(only_notes(done.stderr)) == 3


def test_two_folders_of_one_run_count_once(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "seed-0", config(0), scores(10, 50))
    write_run(runs / "attention-flow_seed-0", {**config(0), "name": "other"}, scores(10))
    write_run(runs / "seed-1", config(1), scores(10, 70))
    done = flowrl("report", str(runs), "--json", "--reps", "200")
    assert done.returncode == 0, done.stderr
    (row, _) = json.loads(done.stdout)["groups"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(60.0)  # the one that got further
    (line,) = only_notes(done.stderr)
    assert f"runs {runs / 'seed-0'} and {runs / 'attention-flow_seed-0'} hold the same" in line


def test_one_evaluation_per_run_is_drawn_as_a_point(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_run(runs / f"r{seed}", config(seed), scores(40 + 10 * seed, every=20))
    out = tmp_path / "fig.png"
    done = flowrl("plot", str(runs), "--out", str(out), "--reps", "200")
    assert done.returncode == 0, done.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    height, width, _ = image.shape
    curves = image[: int(0.8 * height), : int(0.4 * width)]  # the learning-curve panel
    assert pixels_near(curves, BLUE) > 50


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_plot_checks_out_before_reading_runs(tmp_path, where):
    (tmp_path / "file").write_text("")
    (tmp_path / "figs.png").mkdir()
    out = tmp_path / ("figs.png" if where == "folder" else "file/fig.png")
    done = flowrl("plot", str(tmp_path / "missing"), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = "is a folder" if where == "folder" else f"{tmp_path / 'file'} is a file"
    assert f"--out {out}" in done.stderr and expected in done.stderr


@pytest.mark.parametrize("command", ["report", "plot"])
def test_help_shows_one_percent_sign(command):
    done = flowrl(command, "--help")
    assert "95%" in done.stdout and "%%" not in done.stdout


def test_a_run_without_config_is_named_and_one_with_events_only_is_read(tmp_path):
    """Beside runs with metrics.jsonl: a folder with metrics but no config.yaml is left out
    with a note (it was a group of None keys); one with TensorBoard events and config.yaml
    but no metrics.jsonl is read from its events (it was dropped without a word)."""
    import yaml
    from torch.utils.tensorboard import SummaryWriter

    runs = tmp_path / "runs"
    write_run(runs / "good-0", config(0), scores(10, 50))
    write_run(runs / "no-config", config(1), scores(10, 99))
    (runs / "no-config" / "config.yaml").unlink()
    events = runs / "events-only"
    writer = SummaryWriter(log_dir=str(events))
    for step, value in ((10, 20.0), (20, 70.0)):
        writer.add_scalar(METRIC, value, step)
    writer.close()
    (events / "config.yaml").write_text(yaml.safe_dump(config(2)))
    done = flowrl("report", str(runs), "--json", "--reps", "200", "--metric", METRIC)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["groups"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(60.0)
    (note,) = only_notes(done.stderr)
    assert note.startswith(f"note: run {runs / 'no-config'} left out: no config.yaml in it")
    out = tmp_path / "fig.png"
    plotted = flowrl("plot", str(runs), "--out", str(out), "--reps", "200")
    assert plotted.returncode == 0 and out.is_file(), plotted.stderr
    assert len(only_notes(plotted.stderr)) == 1 and "no-config" in plotted.stderr


@pytest.mark.parametrize("command", ["report", "plot"])
def test_a_negative_bootstrap_seed_is_one_line_before_any_run_is_read(tmp_path, command):
    """It was numpy's traceback, after the runs were read."""
    out = ["--out", str(tmp_path / "fig.png")] if command == "plot" else []
    done = flowrl(command, str(tmp_path / "missing"), "--seed", "-1", *out)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"flowrl {command}: error: --seed -1: expected an integer >= 0"
    ]
