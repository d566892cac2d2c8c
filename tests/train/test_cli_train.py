"""`flowrl train` and `flowrl eval` end to end, in subprocesses, on a tiny real dataset."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.train.helpers import DATASET, ROOT, flowrl, losses, train, write_config


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Subprocess environment with a small scripted-Pendulum Minari dataset of its own."""
    root = tmp_path_factory.mktemp("minari")
    environ = {**os.environ, "MINARI_DATASETS_PATH": str(root), "PYTHONPATH": str(ROOT)}
    cmd = ["collect", "--episodes", "12", "--dataset-id", DATASET, "--seed", "3"]
    done = flowrl(cmd, environ)
    assert done.returncode == 0, done.stderr
    return environ


def test_train_checkpoint_resume_and_evaluate(env, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs")
    full = train(env, config, "--set", "name=full")
    assert "normalised score" in full.stdout and "dataset average" in full.stdout
    run = tmp_path / "runs" / "full"
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}

    train(env, config, "--set", "name=part", "--set", "steps=15")
    train(env, config, "--set", "name=part", "--set", "steps=30", "--resume")
    uninterrupted, resumed = losses(run), losses(tmp_path / "runs" / "part")
    assert sorted(resumed) == list(range(1, 31))
    for step in range(1, 31):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-7), step

    # TensorBoard's own reader finds the scalars the JSONL file has
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "perf/steps_per_s",
        "perf/tokens_per_s",
        "eval/normalized_mean_last",
        "eval/normalized_mean_best",
    ):
        assert tag in tags, tag
    assert any(t.startswith("eval/target_") and t.endswith("/normalized_mean") for t in tags)
    assert events.PluginTagToContent("hparams"), "no hyperparameters in the event files"
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert logged.keys() == uninterrupted.keys()
    np.testing.assert_allclose(
        [logged[s] for s in logged], [uninterrupted[s] for s in logged], rtol=1e-6
    )
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs[0] == pytest.approx(3e-3 * 2 / 5) and lrs[-1] == pytest.approx(3e-3)

    out = tmp_path / "eval.json"
    done = flowrl(
        [
            "eval",
            "--checkpoint",
            str(run / "checkpoints/last.pt"),
            "--episodes",
            "3",
            "--num-envs",
            "2",
            "--target",
            "-150",
            "--target",
            "-400",
            "--max-steps",
            "15",
            "--json",
            str(out),
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["targets"]) == {"-150", "-400"}
    for summary in result["targets"].values():
        assert summary["episodes"] == 3
        assert {"return_mean", "return_std", "normalized_mean", "normalized_std"} <= set(summary)


@pytest.mark.parametrize(
    "model",
    [
        {"attention": "softmax"},
        {"attention": "flow", "context_mode": "episode", "context_len": 200},
        {"attention": "softmax", "context_mode": "episode", "context_len": 200},
    ],
    ids=["softmax-window", "flow-episode", "softmax-episode"],
)
def test_other_agents_train(env, tmp_path, model):
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "runs", **model)
    train(env, config, "--set", "steps=40", "--set", "eval.every=0")
    loss = losses(tmp_path / "runs" / "tiny")
    assert np.mean([loss[s] for s in range(36, 41)]) < np.mean([loss[s] for s in range(1, 6)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "optim.lrr=1"], "optim.lrr"),
        (["--set", "model.attention=linear"], "model.attention='linear'"),
        (["--set", "steps=many"], "steps"),
        (["--set", "data.dataset=nope/missing-v0"], "nope/missing-v0"),
        (["--config", "/nonexistent/x.yaml"], "/nonexistent/x.yaml"),
        (["--resume", "--set", "name=never-ran"], "no checkpoint"),
        (["--set", "log_every=0"], "log_every=0"),
        (["--set", "optim.lr=nan"], "optim.lr=nan"),
        (["--set", "model.dropout=1.5"], "model.dropout=1.5"),
        (["--set", "optim.betas=[0.9]"], "optim.betas"),
        (["--config", str(ROOT / "tests/train/malformed.yaml")], "malformed YAML"),
    ],
)
def test_bad_config_exits_cleanly(env, tmp_path, args, message):
    done = flowrl(["train", "--no-progress", "--set", f"out_dir={tmp_path}", *args], env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_eval_of_a_missing_checkpoint_exits_cleanly(env, tmp_path):
    done = flowrl(["eval", "--checkpoint", str(tmp_path / "none.pt")], env)
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
