"""Neural-network layers."""

from flowrl.nn.attention import (
    ATTENTION_TYPES,
    CausalSelfAttention,
    FlowAttention,
    SoftmaxAttention,
    make_attention,
)

__all__ = [
    "ATTENTION_TYPES",
    "CausalSelfAttention",
    "FlowAttention",
    "SoftmaxAttention",
    "make_attention",
]
