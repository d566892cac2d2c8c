"""benchmarks/training.py and benchmarks/inference.py --smoke: the CPU speed benchmarks still
run, end to end, with every case (sigmoid and ReLU features side by side), write their JSON
under --out with the machine and the command, and leave the committed results alone."""

from __future__ import annotations

from tests.benchmarks.smoke import run_smoke

PHASES = ("sample", "copy", "forward", "backward", "optimiser", "logging")


def test_training_smoke(tmp_path):
    doc, stdout = run_smoke("training.py", tmp_path, "training_cpu.json")
    rows = doc["results"]
    assert not [r for r in rows if "error" in r]
    assert all(r["steps_per_s"] > 0 and r["timed_steps"] >= 1 for r in rows)
    # where each step's time goes: every phase timed, forward and backward take time
    for r in rows:
        assert set(r["phase_ms"]) == set(PHASES) and min(r["phase_ms"].values()) >= 0
        assert r["phase_ms"]["forward"] > 0 and r["phase_ms"]["backward"] > 0
        assert sum(r["phase_ms"].values()) <= r["step_ms"] * 1.5
    assert "where a step's time goes" in stdout and "optimiser" in stdout
    window = {(r["attention"], r["resolved_backend"]) for r in rows if r["mode"] == "window"}
    assert window == {
        ("flow", "parallel"),
        ("flow-relu", "parallel"),
        ("flow", "chunked"),
        ("flow-relu", "chunked"),
        ("softmax", "sdpa"),
    }
    episode = {(r["attention"], r["resolved_backend"]) for r in rows if r["mode"] == "episode"}
    assert episode == window - {("softmax", "sdpa")}
    assert len(doc["ratios"]) == 2  # one window K and episode mode
    for entry in doc["ratios"].values():
        for backend in ("parallel", "chunked"):
            assert entry[backend]["relu_over_sigmoid"] > 0
    assert (tmp_path / "training_speed.png").is_file()


def test_training_smoke_with_the_device_sampler(tmp_path):
    """--sampler device: the resident sampler builds the batches (on the CPU here)."""
    doc, _ = run_smoke(
        "training.py", tmp_path, "training_cpu.json", "--sampler", "device", "--episode-batch", "0"
    )
    assert doc["config"]["sampler"] == "device"
    rows = doc["results"]
    assert rows and not [r for r in rows if "error" in r]
    assert all(r["sampler"] == "device" and r["phase_ms"]["forward"] > 0 for r in rows)


def test_inference_smoke(tmp_path):
    doc, _ = run_smoke("inference.py", tmp_path, "inference_cpu.json")
    rows = doc["latency"]
    assert {r["attention"] for r in rows} == {"flow", "flow-relu"}
    assert {r["feature_map"] for r in rows} == {"sigmoid", "relu"}
    batches = {r["batch"] for r in rows}
    assert 1 in batches and len(batches) > 1
    for kind in ("flow", "flow-relu"):
        mine = [r for r in rows if r["attention"] == kind]
        assert {r["batch"] for r in mine} == batches
        assert all(r["recurrent_ms"] > 0 and r["plain_step_ms"] > 0 for r in mine)
        assert any(r["recompute_ms"] for r in mine)
    assert [s["batch"] for s in doc["relu_vs_sigmoid"]] == sorted(batches)
    assert all(s["recurrent_relu_over_sigmoid"] > 0 for s in doc["relu_vs_sigmoid"])
    evals = {(r["agent"], r["attention"]) for r in doc["evaluation"]}
    assert evals == {
        (agent, kind) for agent in ("window K=20", "recurrent") for kind in ("flow", "flow-relu")
    }
