"""Causal Flow-Attention (Flowformer): reference, chunked, recurrent and fused backends."""

from flowrl.ops.flow_attention.api import BACKENDS, flow_attention, flow_attention_step
from flowrl.ops.flow_attention.state import FlowAttentionState

__all__ = ["BACKENDS", "FlowAttentionState", "flow_attention", "flow_attention_step"]
