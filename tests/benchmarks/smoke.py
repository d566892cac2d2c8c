"""Runs a benchmark script as a user would, `python benchmarks/<script> --smoke --out DIR`,
and checks what every script promises: exit code 0, the result JSON under --out with the
machine and the exact command, and the committed results and figures left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]


def committed_files() -> dict[Path, bytes]:
    """Every committed result and figure, by path: what no smoke run may change."""
    paths = [p for p in (ROOT / "benchmarks" / "results").rglob("*") if p.is_file()]
    paths += (ROOT / "docs").glob("*.png")
    return {p: p.read_bytes() for p in paths}


def run_checked(cmd: list[str], env: dict[str, str], timeout: float) -> str:
    """Runs `cmd` from the repository root (`timeout` stretched on a loaded machine, see
    tests/timeouts.py); asserts exit code 0 and that the committed
    results and figures are unchanged; returns its stdout."""
    before = committed_files()
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=scaled(timeout)
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert committed_files() == before, "a smoke run changed a committed result"
    return done.stdout


def run_smoke(
    script: str, out: Path, json_name: str, *extra: str, timeout: float = 180
) -> tuple[dict, str]:
    """Runs the script's smoke profile into `out`; returns its JSON and its stdout."""
    argv = ["--smoke", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stdout = run_checked([sys.executable, str(ROOT / "benchmarks" / script), *argv], env, timeout)
    doc = json.loads((out / json_name).read_text())
    info = doc["machine"]
    assert info["cpu"] and info["logical_cores"] >= 1 and info["torch_threads"] >= 1
    assert info["torch"] and info["device"] == "cpu"
    assert info["argv"][1:] == argv
    assert script in info["command"] and "--smoke" in info["command"]
    assert doc["config"]["profile"] == "smoke"
    return doc, stdout
