"""What sets the sink-competition variant apart (the shared checks against its float64
reference: tests/test_ops_flow_variants.py)."""

from __future__ import annotations

import torch

from flowrl.ops.sink_flow_attention import sink_flow_attention
from tests.flow_reference import reference_flow_attention


def test_a_winning_source_keeps_its_share_where_flow_attention_dilutes_it():
    """A weak token, one source with large key features (it wins the competition: its
    conserved outflow is far above the others'), then n weak tokens: the variant's output at
    the last token keeps that source's value as n grows; Flow-Attention's shrinks ~1/n. (The
    first token's conserved outflow is always 1, so the winner comes second, like a T-Maze
    cue after the first return-to-go token.)"""
    d, m = 4, 1

    def outputs(n: int) -> tuple[float, float]:
        q = torch.full((1, n + 2, 1, d), -4.0)  # small query features everywhere
        k = torch.full((1, n + 2, 1, d), -4.0)
        k[:, 1] = 6.0  # key features ~1 against ~0.02: this source wins the competition
        v = torch.zeros(1, n + 2, 1, m)
        v[:, 1] = 1.0  # only the winner carries a value
        sink = sink_flow_attention(q, k, v)[0, -1, 0, 0].item()
        flow = reference_flow_attention(q, k, v)[0, -1, 0, 0].item()
        return sink, flow

    (sink_10, flow_10), (sink_1000, flow_1000) = outputs(10), outputs(1000)
    assert flow_1000 < 0.1 * flow_10  # diluted with the length
    assert sink_1000 > 0.5 * sink_10 > 0
