"""`flowrl report` on synthetic metrics files, against statistics computed here."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from flowrl.cli import main
from tests.experiments.conftest import ATTENTIONS, DATASETS, flowrl


def hand_iqm(values: list[float]) -> float:
    """Sorted, a quarter (rounded down) dropped at each end, the rest averaged."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    kept = ordered[cut : len(ordered) - cut]
    return sum(kept) / len(kept)


def test_report_per_attention_and_dataset(synthetic_runs):
    runs, finals = synthetic_runs
    done = flowrl("report", str(runs), "--json", "--reps", "2000")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["by"] == ["data.dataset", "model.attention"]  # the keys that differ
    rows = {
        (r["metric"], r["label"]["model.attention"], r["label"]["data.dataset"]): r
        for r in report["groups"]
    }
    assert len(rows) == 2 * 2 * 2
    for kind in ("last", "best"):
        for attention in ATTENTIONS:
            for dataset in DATASETS:
                row = rows[(f"eval/normalized_mean_{kind}", attention, dataset)]
                values = finals[(kind, attention, dataset)]
                assert row["n"] == 5 and row["tasks"] == 1
                assert row["mean"] == pytest.approx(sum(values) / 5)
                assert row["std"] == pytest.approx(np.std(values, ddof=1))
                assert row["median"] == pytest.approx(sorted(values)[2])
                # 5 runs: drop the lowest and the highest, average the middle three
                assert row["iqm"] == pytest.approx(sum(sorted(values)[1:4]) / 3)
                assert min(values) <= row["iqm_low"] <= row["iqm"] <= row["iqm_high"] <= max(values)


def test_report_pools_tasks_and_compares_groups(synthetic_runs):
    runs, finals = synthetic_runs
    done = flowrl(
        "report",
        str(runs),
        "--by",
        "model.attention",
        "--metric",
        "eval/normalized_mean_last",
        "--improvement",
        "--json",
        "--reps",
        "2000",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {r["label"]["model.attention"]: r for r in report["groups"]}
    for attention in ATTENTIONS:
        pooled = [v for d in DATASETS for v in finals[("last", attention, d)]]
        assert rows[attention]["n"] == 10 and rows[attention]["tasks"] == 2
        assert rows[attention]["iqm"] == pytest.approx(hand_iqm(pooled))
        assert rows[attention]["iqm"] == pytest.approx(sum(sorted(pooled)[2:8]) / 6)
    # P(flow > softmax): per dataset, the share of (flow run, softmax run) pairs flow wins
    per_task = []
    for d in DATASETS:
        flow, soft = finals[("last", "flow", d)], finals[("last", "softmax", d)]
        wins = sum((a > b) + 0.5 * (a == b) for a in flow for b in soft)
        per_task.append(wins / (len(flow) * len(soft)))
    (item,) = report["probability_of_improvement"]
    assert (item["x"], item["y"]) == ("model.attention=flow", "model.attention=softmax")
    assert item["probability"] == pytest.approx(np.mean(per_task))
    assert item["low"] <= item["probability"] <= item["high"]


def report(capsys, *args: str) -> str:
    """`flowrl report` in this process (the subprocess tests above cover the real CLI)."""
    assert main(["report", *args, "--reps", "500"]) == 0
    return capsys.readouterr().out


def test_report_formats(synthetic_runs, capsys):
    runs, finals = synthetic_runs
    lines = report(capsys, str(runs), "--by", "model.attention").splitlines()
    assert lines[0].split()[:3] == ["model.attention", "metric", "n"]
    assert any(line.startswith("flow ") and "normalized_mean_best" in line for line in lines)
    markdown = report(capsys, str(runs), "--by", "model.attention", "--markdown")
    rows = [line for line in markdown.splitlines() if line.startswith("| softmax")]
    assert len(rows) == 2 and rows[0].count("|") == 9
    text = report(capsys, str(runs), "--by", "model.attention", "--csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == 4
    best_flow = next(
        r for r in records if r["model.attention"] == "flow" and r["metric"].endswith("best")
    )
    pooled = [v for d in DATASETS for v in finals[("best", "flow", d)]]
    assert float(best_flow["iqm"]) == pytest.approx(hand_iqm(pooled))
    assert float(best_flow["mean"]) == pytest.approx(np.mean(pooled))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "model.atention"], "did you mean model.attention"),
        (["--metric", "eval/return_mean_last"], "eval/normalized_mean_best"),
        (["--reps", "0"], "--reps"),
    ],
)
def test_report_user_errors(synthetic_runs, capsys, args, message):
    runs, _ = synthetic_runs
    assert main(["report", str(runs), *args]) == 2
    assert message in capsys.readouterr().err


def test_report_of_a_folder_without_runs(tmp_path):
    done = flowrl("report", str(tmp_path))
    assert done.returncode == 2 and "no runs under" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_reads_tensorboard_event_files(tmp_path, capsys):
    """Runs with only event files (no metrics.jsonl), written by TensorBoard's writer."""
    import yaml
    from torch.utils.tensorboard import SummaryWriter

    finals = []
    for seed, scores in enumerate([(10.0, 30.0), (20.0, 50.0), (15.0, 20.0)]):
        run_dir = tmp_path / f"run-{seed}"
        writer = SummaryWriter(log_dir=str(run_dir))
        for step, score in zip((100, 200), scores, strict=True):
            writer.add_scalar("eval/normalized_mean_last", score, step)
        writer.close()
        config = {"seed": seed, "model": {"attention": "flow"}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        finals.append(scores[-1])
    args = ["report", str(tmp_path), "--metric", "eval/normalized_mean_last", "--json"]
    assert main([*args, "--reps", "200"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["groups"]
    assert row["n"] == 3 and row["mean"] == pytest.approx(np.mean(finals))
    assert row["median"] == pytest.approx(30.0)
