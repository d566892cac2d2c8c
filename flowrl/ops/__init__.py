"""Attention ops. Each op keeps its naive reference beside its fast versions."""

from flowrl.ops.flow_attention import (
    FEATURE_MAPS,
    FlowAttentionState,
    PackedSequences,
    backend_unavailable,
    flow_attention,
    flow_attention_step,
)

__all__ = [
    "FEATURE_MAPS",
    "FlowAttentionState",
    "PackedSequences",
    "backend_unavailable",
    "flow_attention",
    "flow_attention_step",
]
