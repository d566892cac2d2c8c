"""Causal Flow-Attention with a ReLU feature map (docs/flow-attention.md, "Variant: ReLU
features"): a separate op, not a backend of `flow_attention`."""

from flowrl.ops.relu_flow_attention.parallel import relu_flow_attention
from flowrl.ops.relu_flow_attention.recurrent_step import relu_flow_attention_step

__all__ = ["relu_flow_attention", "relu_flow_attention_step"]
