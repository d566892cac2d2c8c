"""--smoke of the CPU benchmarks of the op, the samplers, the evaluator, acting precision and
the T-Maze probe: each script still runs end to end with every case, writes its JSON under
--out with the machine and the command, and leaves the committed results alone."""

from __future__ import annotations

import importlib

from tests.benchmarks.smoke import ROOT, run_smoke


def test_attention_smoke(tmp_path):
    doc, out = run_smoke("attention.py", tmp_path, "attention_cpu.json")
    rows = doc["results"]
    assert {(r["backend"], r["mode"]) for r in rows} == {
        (b, m) for b in ("naive", "chunked", "parallel", "softmax") for m in ("fwd", "fwd+bwd")
    }
    assert all(r["time_ms"] > 0 and r["peak_mb"] >= 0 for r in rows)
    assert doc["table"] in out


def test_parallel_blocks_smoke(tmp_path):
    doc, _ = run_smoke("parallel_blocks.py", tmp_path, "parallel_blocks_cpu.json")
    cases = {"one block", "blocks of 32", "blocks of 64", "chunked", "auto"}
    assert all(set(r["seconds"]) == cases for r in doc["rows"])
    assert all(t > 0 for r in doc["rows"] for t in r["seconds"].values())
    # the smoke lengths straddle the switch from one block to blocks
    assert {r["auto_block"] is None for r in doc["rows"]} == {True, False}


def test_sampler_smoke(tmp_path):
    doc, _ = run_smoke("sampler.py", tmp_path, "sampler.json")
    modes = {(r["mode"], r["K"]) for r in doc["results"]}
    K = doc["config"]["windows"]
    assert modes == {("window", K[0]), ("window", K[1])} | {
        (m, max(K)) for m in ("episode padded", "episode packed")
    }
    assert all(r["windows_per_s"] > 0 for r in doc["results"])


def test_evaluation_smoke(tmp_path):
    doc, _ = run_smoke("evaluation.py", tmp_path, "evaluation_cpu.json", "--async-envs")
    small, large = doc["config"]["num_envs"]
    rates = doc["env_steps_per_s"]
    assert "peer_single_env_K20_recompute" in rates
    for M in (small, large):
        assert f"policy_only_M{M}" in rates
        for mode in ("sync", "async"):
            assert f"env_only_M{M}_{mode}" in rates and f"evaluator_M{M}_{mode}" in rates
    assert all(v > 0 for v in rates.values())
    assert set(doc["checks"]) == {
        f"M{large}_{mode}_{name}" for mode in ("sync", "async")
        for name in ("serial_bound", "evaluator_over_bound")
    } | {f"M{small}_{mode}_evaluator_over_peer" for mode in ("sync", "async")}  # fmt: skip


def test_tmaze_probe_smoke(tmp_path):
    doc, _ = run_smoke("tmaze_probe.py", tmp_path, "tmaze_probe.json")
    runs = {(r["run"], r["length"]) for r in doc["rows"]}
    assert runs == {
        (f"passive-L6-{kind}-episode/seed-0", L) for kind in ("flow", "flow-relu") for L in (6, 12)
    }
    assert all("up" in r and "down" in r for r in doc["rows"])


def test_acting_precision_smoke(tmp_path):
    doc, _ = run_smoke("acting_precision.py", tmp_path, "acting_precision.json")
    assert [r["steps"] for r in doc["drift"]] == [10, 30]
    for row in doc["drift"]:  # a float64 state meets the float64 model to fp32 inputs
        assert row["relative_error_float64_state"] < 1e-5
    assert [r["batch"] for r in doc["step_ms"]] == [1, 3]
    assert all(r["float32_state_ms"] > 0 and r["float64_state_ms"] > 0 for r in doc["step_ms"])


def test_minigrid_probe_smoke(tmp_path):
    doc, stdout = run_smoke("minigrid_probe.py", tmp_path, "minigrid_probe.json")
    rows = [(r["run"], r["factor"], r["size"], r["episodes"]) for r in doc["rows"]]
    run = "minigrid-L7-flow-relu-episode/seed-0"
    assert rows == [(run, 1, 7, 2), (run, 2, 11, 2)]
    assert "margin=" in stdout and "timeout=" in stdout
    assert "memory weight " in stdout and "nan" not in stdout  # per block, best head


def test_minigrid_probe_prints_each_blocks_best_head(monkeypatch):
    """A head whose keys are all closed reads nothing (NaN); the block's look-up head shows;
    hallway keys are compared with open memory keys only."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    best_head = importlib.import_module("minigrid_probe").best_head
    nan = float("nan")
    assert best_head([[0.5, 0.001, nan, 0.08], [nan, nan, nan, nan]]) == "0.500 / closed"
    finite_mean = importlib.import_module("minigrid_probe").finite_mean
    inf = float("inf")  # hallway keys against a memory whose keys are all closed
    assert finite_mean([[1.0, inf], [3.0, inf]]) == "2.00"
    assert finite_mean([[inf, inf]]) == "closed"


def test_minigrid_probe_follows_the_up_close_oracle(tmp_path):
    doc, _ = run_smoke("minigrid_probe.py", tmp_path, "minigrid_probe.json", "--look", "up-close")
    assert doc["config"]["look"] == "up-close" and len(doc["rows"]) == 2


def test_kernel_resources_smoke(tmp_path):
    """Every sequence-parallel kernel compiled for sm_90 without a GPU, bf16 at d = 64 and
    128: none spills, and the kernels with matmuls use tensor cores."""
    doc, _ = run_smoke("kernel_resources.py", tmp_path, "kernel_resources.json", timeout=900)
    rows = doc["rows"]
    assert {(r["dtype"], r["d"]) for r in rows} == {("bf16", 64), ("bf16", 128)}
    assert len({r["kernel"] for r in rows}) == 11
    assert all(r["registers"] > 0 and r["spill_bytes"] == 0 for r in rows)
    assert all(r["mma_instructions"] > 0 for r in rows if r["kernel"] not in ("fwd_sums", "scan"))
