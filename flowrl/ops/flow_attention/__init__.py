"""Causal Flow-Attention (Flowformer): reference, chunked, parallel, recurrent, fused backends,
each for every feature map of `FEATURE_MAPS`."""

from flowrl.ops.flow_attention.api import (
    BACKENDS,
    backend_unavailable,
    flow_attention,
    flow_attention_step,
)
from flowrl.ops.flow_attention.feature_maps import FEATURE_MAPS
from flowrl.ops.flow_attention.protocol import FlowOptions
from flowrl.ops.flow_attention.readings import FlowAttentionGates, flow_attention_gates
from flowrl.ops.flow_attention.state import FlowAttentionState
from flowrl.ops.flow_attention.varlen import PackedSequences

__all__ = [
    "BACKENDS",
    "FEATURE_MAPS",
    "FlowAttentionGates",
    "FlowAttentionState",
    "FlowOptions",
    "PackedSequences",
    "backend_unavailable",
    "flow_attention",
    "flow_attention_gates",
    "flow_attention_step",
]
