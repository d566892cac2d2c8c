"""benchmarks/training.py and benchmarks/inference.py --smoke: the CPU speed benchmarks still
run, end to end, with every case (sigmoid and ReLU features side by side), write their JSON
under --out with the machine and the command, and leave the committed results alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [
    ROOT / "benchmarks" / "results" / "training_cpu.json",
    ROOT / "benchmarks" / "results" / "inference_cpu.json",
    ROOT / "docs" / "training_speed.png",
]


def snapshot() -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.is_file() else None for p in COMMITTED}


def run_smoke(script: str, out: Path) -> dict:
    before = snapshot()
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert snapshot() == before, "--smoke changed a committed result"
    doc = json.loads((out / script.replace(".py", "_cpu.json")).read_text())
    info = doc["machine"]
    assert info["cpu"] and info["logical_cores"] >= 1 and info["torch_threads"] >= 1
    assert info["torch"] and info["device"] == "cpu"
    assert info["argv"][1:] == ["--smoke", "--out", str(out)]
    assert script in info["command"] and "--smoke" in info["command"]
    assert doc["config"]["profile"] == "smoke"
    return doc


def test_training_smoke(tmp_path):
    doc = run_smoke("training.py", tmp_path)
    rows = doc["results"]
    assert not [r for r in rows if "error" in r]
    assert all(r["steps_per_s"] > 0 and r["timed_steps"] >= 1 for r in rows)
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


def test_inference_smoke(tmp_path):
    doc = run_smoke("inference.py", tmp_path)
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
