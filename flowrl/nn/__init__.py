"""Neural-network layers."""

from flowrl.nn.attention import ATTENTION_TYPES, FlowAttention, SoftmaxAttention, make_attention

__all__ = ["ATTENTION_TYPES", "FlowAttention", "SoftmaxAttention", "make_attention"]
