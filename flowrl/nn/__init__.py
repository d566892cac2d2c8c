"""Neural-network layers."""

from flowrl.nn.attention import (
    ATTENTION_KINDS,
    AttentionKind,
    CausalSelfAttention,
    FlowAttention,
    SoftmaxAttention,
    attention_kind,
    make_attention,
)

__all__ = [
    "ATTENTION_KINDS",
    "AttentionKind",
    "CausalSelfAttention",
    "FlowAttention",
    "SoftmaxAttention",
    "attention_kind",
    "make_attention",
]
