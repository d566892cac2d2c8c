"""Causal self-attention layers with one interface, chosen by name: `flow`, `flow-sink`
(Flow-Attention with the competition read at the sink, a separate op), `flow-relu`
(Flow-Attention with ReLU features, a separate op) or `softmax`."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.ops.flow_attention import (
    BACKENDS,
    FlowAttentionState,
    PackedSequences,
    flow_attention,
    flow_attention_step,
)
from flowrl.ops.relu_flow_attention import relu_flow_attention, relu_flow_attention_step
from flowrl.ops.sink_flow_attention import sink_flow_attention, sink_flow_attention_step


class CausalSelfAttention(nn.Module):
    """What every attention layer offers: q/k/v and output projections, output dropout,
    `forward` over whole (optionally packed) sequences and, where `recurrent`, `step`
    over one token per row from a state carried between calls.

    `backends` lists the implementations the layer can run on (`backend` picks one).
    """

    recurrent: ClassVar[bool] = False
    backends: ClassVar[tuple[str, ...]] = ("auto",)

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if backend not in self.backends:
            raise ValueError(f"backend={backend!r}: expected one of {', '.join(self.backends)}")
        self.num_heads, self.head_dim, self.backend = num_heads, embed_dim // num_heads, backend
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., E) -> q, k, v (..., H, head_dim)."""
        return self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)

    def _out(self, y: Tensor) -> Tensor:
        """Heads (..., H, head_dim) -> projected, dropped-out (..., E)."""
        return self.dropout(self.proj(y.flatten(-2)))

    def _attend_padded(
        self,
        x: Tensor,
        cu_seqlens: Tensor | PackedSequences | None,
        attend: Callable[[Tensor, Tensor, Tensor], Tensor],
    ) -> Tensor:
        """x (B, L, E) -> (B, L, E) through `attend`(q, k, v) over (B, L, H, d) rows that each
        start a sequence: packed sequences are right-padded into rows first (causal attention
        never reads the pads) and gathered back after."""
        q, k, v = self._heads(x)
        packed = cu_seqlens
        if packed is not None and not isinstance(packed, PackedSequences):
            packed = PackedSequences.from_offsets(packed, x.shape[1])
        if packed is not None:
            q, k, v = packed.pad(q), packed.pad(k), packed.pad(v)
        y = attend(q, k, v)
        return self._out(y if packed is None else packed.unpad(y))

    def forward(self, x: Tensor, *, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        """x (B, L, E) -> (B, L, E); packed sequences (B = 1, `cu_seqlens` offsets, or a
        `PackedSequences` built once per model forward) attend only within their own span."""
        raise NotImplementedError

    def step(self, x: Tensor, state: object | None) -> tuple[Tensor, object]:
        """One token per row, x (B, E) -> (B, E) and the next state (recurrent layers)."""
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")


class FlowAttention(CausalSelfAttention):
    """Multi-head causal Flow-Attention (docs/flow-attention.md).

    Flow-Attention forms no attention matrix, so dropout applies to the output only.
    """

    recurrent = True
    backends = BACKENDS
    step_op = staticmethod(flow_attention_step)

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
        eps: float = 1e-6,
        clamp: float = 10.0,
    ) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, backend=backend)
        self.eps, self.clamp = eps, clamp

    def forward(
        self,
        x: Tensor,
        *,
        cu_seqlens: Tensor | PackedSequences | None = None,
        state: FlowAttentionState | None = None,
        return_state: bool = False,
    ) -> Tensor | tuple[Tensor, FlowAttentionState]:
        """x (B, L, E) -> (B, L, E); `state` continues a prefix, `return_state` gives the next."""
        q, k, v = self._heads(x)
        result = flow_attention(
            q,
            k,
            v,
            backend=self.backend,
            eps=self.eps,
            clamp=self.clamp,
            cu_seqlens=cu_seqlens,
            initial_state=state,
            return_state=return_state,
        )
        y, new_state = result if return_state else (result, None)
        y = self._out(y)
        return (y, new_state) if return_state else y

    def step(
        self, x: Tensor, state: FlowAttentionState | None
    ) -> tuple[Tensor, FlowAttentionState]:
        """One token per row, x (B, E), at O(d*m) cost whatever came before."""
        q, k, v = self._heads(x)
        y, state = self.step_op(q, k, v, state, eps=self.eps, clamp=self.clamp)
        return self._out(y), state


class FlowVariantAttention(FlowAttention):
    """A Flow-Attention variant: a separate op with one backend (`parallel_op` over padded
    rows, each a sequence from its first token) and its recurrent step (`step_op`)."""

    backends = ("auto",)
    parallel_op: ClassVar[Callable[..., Tensor]]

    def forward(self, x: Tensor, *, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            return self.parallel_op(q, k, v, eps=self.eps, clamp=self.clamp)

        return self._attend_padded(x, cu_seqlens, attend)


class SinkFlowAttention(FlowVariantAttention):
    """Multi-head causal Flow-Attention whose competition is normalised when a sink reads it
    (docs/flow-attention.md, "Variant: competition at the sink"): a source that wins the
    competition keeps its share of every later output, however long the sequence grows."""

    parallel_op = staticmethod(sink_flow_attention)
    step_op = staticmethod(sink_flow_attention_step)


class ReluFlowAttention(FlowVariantAttention):
    """Multi-head causal Flow-Attention with ReLU features (docs/flow-attention.md,
    "Variant: ReLU features"): a token whose key features are all zero drops out of every
    later output but for the position in its allocation, however long the sequence grows."""

    parallel_op = staticmethod(relu_flow_attention)
    step_op = staticmethod(relu_flow_attention_step)


class SoftmaxAttention(CausalSelfAttention):
    """Multi-head causal softmax attention on `scaled_dot_product_attention`."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, backend=backend)
        self.attn_dropout = dropout

    def forward(self, x: Tensor, *, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        dropout = self.attn_dropout if self.training else 0.0

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            return y.transpose(1, 2)

        return self._attend_padded(x, cu_seqlens, attend)


ATTENTION_TYPES: dict[str, type[CausalSelfAttention]] = {
    "flow": FlowAttention,
    "flow-sink": SinkFlowAttention,
    "flow-relu": ReluFlowAttention,
    "softmax": SoftmaxAttention,
}


def make_attention(name: str, embed_dim: int, num_heads: int, **kwargs) -> CausalSelfAttention:
    """Builds the attention layer called `name` (a key of ATTENTION_TYPES)."""
    if name not in ATTENTION_TYPES:
        raise ValueError(f"attention={name!r}: expected one of {', '.join(ATTENTION_TYPES)}")
    return ATTENTION_TYPES[name](embed_dim, num_heads, **kwargs)
