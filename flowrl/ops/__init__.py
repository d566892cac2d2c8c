"""Attention ops. Each op keeps its naive reference beside its fast versions."""

from flowrl.ops.flow_attention import (
    FlowAttentionState,
    PackedSequences,
    flow_attention,
    flow_attention_step,
)

__all__ = ["FlowAttentionState", "PackedSequences", "flow_attention", "flow_attention_step"]
