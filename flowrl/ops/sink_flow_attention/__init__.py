"""Causal Flow-Attention with the competition normalised at the sink (docs/flow-attention.md,
"Variant: competition at the sink"): a separate op, not a backend of `flow_attention`."""

from flowrl.ops.sink_flow_attention.parallel import sink_flow_attention
from flowrl.ops.sink_flow_attention.recurrent_step import sink_flow_attention_step

__all__ = ["sink_flow_attention", "sink_flow_attention_step"]
