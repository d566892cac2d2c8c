"""Neural-network layers."""

from flowrl.nn.attention import (
    ATTENTION_TYPES,
    CausalSelfAttention,
    FlowAttention,
    ReluFlowAttention,
    SinkFlowAttention,
    SoftmaxAttention,
    make_attention,
)

__all__ = [
    "ATTENTION_TYPES",
    "CausalSelfAttention",
    "FlowAttention",
    "ReluFlowAttention",
    "SinkFlowAttention",
    "SoftmaxAttention",
    "make_attention",
]
