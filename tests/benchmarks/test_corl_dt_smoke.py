"""benchmarks/corl_dt.py --smoke: CORL's dt.py, imported as it is, trains a few steps on a
tiny Minari Hopper dataset. Needs a copy of CORL's algorithms/offline/dt.py at
benchmarks/out/corl/dt.py (not in the repository; docs/gpu.md says how to get it)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.benchmarks.smoke import ROOT, run_checked
from tests.benchmarks.test_papers_budget_smoke import collect_hopper

DT = ROOT / "benchmarks" / "out" / "corl" / "dt.py"


@pytest.mark.skipif(not DT.is_file(), reason=f"needs CORL's dt.py at {DT}")
def test_corl_dt_trains_on_a_minari_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "data"))
    collect_hopper("zoo/hopper/medium-v0", episodes=4, seed=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "corl_dt.py"), "--smoke", "--dt", str(DT)]
    stdout = run_checked([*cmd, "--out", str(tmp_path / "out")], env, timeout=300)
    result = json.loads((tmp_path / "out" / "corl_dt.json").read_text())
    assert result["steps_per_s"] > 0 and result["timed_steps"] == 5
    assert result["model"] == {"embed": 128, "layers": 3, "heads": 1, "K": 20}
    assert "steps/s" in stdout
