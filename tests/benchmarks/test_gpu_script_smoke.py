"""benchmarks/gpu.py --smoke: the GPU script still runs, end to end, on the CPU.

It runs every section at tiny sizes (the Triton kernels under TRITON_INTERPRET=1, pytest
limited to -k relu_features), so a change that breaks the script shows here and not on
the first GPU it meets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from tests.benchmarks.smoke import ROOT, run_checked


def test_smoke_run_writes_every_section(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path)]
    stdout = run_checked(cmd, env, timeout=300)
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["finished"] and doc["exit_code"] == 0
    meta = doc["meta"]
    assert meta["argv"][1:] == ["--smoke", "--out", str(tmp_path)] and "gpu.py" in meta["command"]
    assert meta["cpu"] and meta["logical_cores"] >= 1 and meta["torch_threads"] == 1
    assert meta["torch"] and meta["device"].startswith("cpu")

    assert doc["checks"] and all(c["status"] == "PASS" and c["passed"] for c in doc["checks"])

    timed = [r for r in doc["kernels"] if "time_ms" in r]
    assert {r["feature_map"] for r in timed} >= {"sigmoid", "relu"}
    backends = {"chunked", "parallel", "sdpa"}
    if importlib.util.find_spec("triton"):  # the kernels under the interpreter
        backends |= {"triton", "triton-serial"}
    assert {r["backend"] for r in timed} >= backends
    assert {r["shape"] for r in timed} == {"dt-episode", "dt-window", "sweep"}
    for feature_map in ("sigmoid", "relu"):
        for mode in ("fwd", "fwd+bwd"):
            assert any(r["feature_map"] == feature_map and r["mode"] == mode for r in timed)
    assert not [r for r in doc["kernels"] if "error" in r]

    dt = {r["attention"]: r for r in doc["dt"] if r["mode"] == "window"}
    assert set(dt) == {"flow", "flow-relu", "softmax"}
    assert {r["attention"] for r in doc["dt"] if r["mode"] == "episode"} == set(dt)
    assert all(r["steps_per_s"] > 0 for r in doc["dt"])
    phases = {"sample", "copy", "forward", "backward", "optimiser", "logging"}
    assert all(set(r["phase_ms"]) == phases and r["phase_ms"]["forward"] > 0 for r in doc["dt"])

    table = (tmp_path / "table.txt").read_text()
    for heading in ("CHECKS", "KERNELS", "DECISION TRANSFORMER", "optimiser", "RESULT: OK"):
        assert heading in table
    assert stdout.rstrip().endswith(f"wrote {tmp_path / 'gpu.json'} and {tmp_path / 'table.txt'}")
