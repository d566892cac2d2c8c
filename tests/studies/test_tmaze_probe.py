"""The T-Maze probe (flowrl.studies.tmaze_probe) on tiny untrained agents: its fields, a cue
that cannot reach the junction reads as 0, and a sweep folder's checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.studies.tmaze_probe import probe_sweep, probe_tmaze


def tmaze_agent(attention: str = "flow", mode: str = "episode", K: int = 40, heads: int = 2):
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=2, act_dim=4, discrete=True, embed_dim=16, n_layers=2, n_heads=heads,
        attention=attention, context_mode=mode, context_len=K, max_timestep=64, dropout=0.0,
    )  # fmt: skip
    normalizer = Normalizer.from_arrays(np.zeros(2), np.ones(2), np.ones(4), 1.0, discrete=True)
    return DecisionTransformerAgent.from_parts(DecisionTransformer(cfg).eval(), normalizer)


@pytest.mark.parametrize("attention", ["flow", "flow-relu"])
def test_flow_agent_reports_every_field(attention):
    result = probe_tmaze(tmaze_agent(attention), length=12)
    assert 0 <= result["p_correct"] <= 1 and np.isfinite(result["margin"])
    assert len(result["cue_share"]) == 2 and all(s > 0 for s in result["cue_share"])
    for cue in ("up", "down"):
        readings = result[cue]
        assert set(readings) == {"cue_weight", "cue_source", "cue_z_share", "silent_keys"}
        for values in readings.values():  # per block, per head
            assert np.asarray(values).shape == (2, 2)
        assert all(0 <= w <= 1 for block in readings["cue_z_share"] for w in block)
    if attention == "flow":  # sigmoid features are never 0
        assert result["up"]["silent_keys"] == [[0.0, 0.0], [0.0, 0.0]]
    # acting token by token through the recurrent state meets the parallel forward
    assert set(result["acting_margin"]) == {"float32", "float64"}
    for margin in result["acting_margin"].values():
        assert margin == pytest.approx(result["margin"], abs=1e-4)


def test_softmax_agent_has_no_flow_readings():
    result = probe_tmaze(tmaze_agent("softmax"), length=5)
    assert set(result) == {"p_correct", "margin", "cue_share"}


def test_cue_outside_the_window_never_reaches_the_junction():
    # a window of 4 steps at the junction of a 12-step corridor: the cue is gone
    result = probe_tmaze(tmaze_agent(mode="window", K=4), length=12)
    assert result["cue_share"] == [0.0, 0.0]
    assert result["p_correct"] == pytest.approx(0.5)
    assert result["margin"] <= 0


def test_probe_sweep_reads_each_runs_checkpoint(tmp_path):
    sweep = tmp_path / "passive-L6-flow-episode"
    for seed in (0, 1):
        tmaze_agent().save(sweep / "runs" / f"seed-{seed}" / "checkpoints" / "last.pt")
    rows = probe_sweep(sweep, 6, factors=[1, 2], checkpoint="last.pt")
    assert [(r["run"], r["length"]) for r in rows] == [
        (f"passive-L6-flow-episode/seed-{seed}", L) for seed in (0, 1) for L in (6, 12)
    ]
    assert rows[0]["margin"] == pytest.approx(probe_tmaze(tmaze_agent(), 6)["margin"])


def test_probe_sweep_with_another_eps_reads_with_it(tmp_path):
    sweep = tmp_path / "passive-L6-flow-relu-episode"
    tmaze_agent("flow-relu").save(sweep / "runs" / "seed-0" / "checkpoints" / "last.pt")
    loud = tmaze_agent("flow-relu")
    for block in loud.model.blocks:
        block.attn.eps = 0.5
    row = probe_sweep(sweep, 6, factors=[1], checkpoint="last.pt", eps=0.5)[0]
    assert row["margin"] == pytest.approx(probe_tmaze(loud, 6)["margin"])
    assert row["margin"] != pytest.approx(probe_sweep(sweep, 6, [1], "last.pt")[0]["margin"])
