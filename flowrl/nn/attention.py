"""Causal self-attention layers with one interface, chosen by name: `flow` or `softmax`."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.ops.flow_attention import (
    FlowAttentionState,
    PackedSequences,
    flow_attention,
    flow_attention_step,
)


class FlowAttention(nn.Module):
    """Multi-head causal Flow-Attention: q/k/v projections, the op, output projection, dropout.

    Flow-Attention forms no attention matrix, so dropout applies to the output only.
    """

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
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.backend, self.eps, self.clamp = backend, eps, clamp
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)

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
        y = self.dropout(self.proj(y.flatten(-2)))
        return (y, new_state) if return_state else y

    def step(
        self, x: Tensor, state: FlowAttentionState | None
    ) -> tuple[Tensor, FlowAttentionState]:
        """One token per row, x (B, E), at O(d*m) cost whatever came before."""
        q, k, v = self._heads(x)
        y, state = flow_attention_step(q, k, v, state, eps=self.eps, clamp=self.clamp)
        return self.dropout(self.proj(y.flatten(-2))), state


class SoftmaxAttention(nn.Module):
    """Multi-head causal softmax attention on `scaled_dot_product_attention`."""

    def __init__(
        self, embed_dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.attn_dropout = dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        """x (B, L, E) -> (B, L, E); packed sequences (B = 1) attend within their own span."""
        q, k, v = (
            t.transpose(1, 2)
            for t in self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)
        )
        dropout = self.attn_dropout if self.training else 0.0
        if cu_seqlens is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            if not isinstance(cu_seqlens, PackedSequences):
                cu_seqlens = PackedSequences.from_offsets(cu_seqlens, x.shape[1])
            mask = cu_seqlens.same_sequence_mask().tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.dropout(self.proj(y.transpose(1, 2).flatten(-2)))


ATTENTION_TYPES: dict[str, type[nn.Module]] = {"flow": FlowAttention, "softmax": SoftmaxAttention}


def make_attention(name: str, embed_dim: int, num_heads: int, **kwargs) -> nn.Module:
    """Builds the attention layer called `name` (a key of ATTENTION_TYPES)."""
    if name not in ATTENTION_TYPES:
        raise ValueError(f"attention={name!r}: expected one of {', '.join(ATTENTION_TYPES)}")
    return ATTENTION_TYPES[name](embed_dim, num_heads, **kwargs)
