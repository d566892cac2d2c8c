"""Causal self-attention layers with one interface, and the attention kinds a model names:
`flow` (Flow-Attention, sigmoid features), `flow-relu` (ReLU features), `flow-mixed` (ReLU
features in the first half of the heads, sigmoid in the rest) and `softmax`.
Everything that depends on the kind reads its `AttentionKind` entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.ops.flow_attention import (
    BACKENDS,
    FlowAttentionGates,
    FlowAttentionState,
    PackedSequences,
    flow_attention,
    flow_attention_gates,
    flow_attention_step,
)
from flowrl.ops.flow_attention.feature_maps import head_groups
from flowrl.ops.flow_attention.protocol import DEFAULTS


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


def spread_over_heads(feature_map: str | tuple[str, ...], heads: int) -> str | tuple[str, ...]:
    """One map for every head, or maps given in order over consecutive runs of heads as
    equal as `heads` allows (the first runs take the extra heads): ("relu", "sigmoid") over
    4 heads is (relu, relu, sigmoid, sigmoid), over 1 head (relu,)."""
    if isinstance(feature_map, str):
        return feature_map
    n = len(feature_map)
    sizes = [heads // n + (i < heads % n) for i in range(n)]
    return tuple(name for name, size in zip(feature_map, sizes, strict=True) for _ in range(size))


def key_gate_value(logit: Tensor) -> Tensor:
    """The key gate from its linear part: clamp(0.5 + logit, 0, 1), open halfway when the
    linear part is 0 (its initial scale), exactly 0 or 1 at the ends."""
    return (logit + 0.5).clamp(0.0, 1.0)


class FlowAttention(CausalSelfAttention):
    """Multi-head causal Flow-Attention (docs/flow-attention.md) with feature map
    `feature_map` (`flowrl.ops.FEATURE_MAPS`), or several spread over the heads in order.

    Flow-Attention forms no attention matrix, so dropout applies to the output only.

    `key_gate` (ReLU features only) scales each token's keys, per head, by a learned gate
    g = clamp(0.5 + w.x + b, 0, 1). As phi(g k) = g phi(k) for ReLU, a gate at exactly 0
    takes the token out of every later query's read and normaliser, at any length: the
    output's weighted mean cannot be diluted by tokens the model learned to silence
    (docs/long-context.md, "A read that length cannot dilute"). The token still counts in
    the competition (Z and t), with exp(Ohat) = exp(0) = 1. In training, `gate_mean`
    holds the mean gate of the last forward, for a penalty that closes unneeded gates.
    """

    recurrent = True
    backends = BACKENDS

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        feature_map: str | tuple[str, ...] = DEFAULTS.feature_map,
        eps: float = DEFAULTS.eps,
        clamp: float = DEFAULTS.clamp,
        key_gate: bool = False,
        **layer: Any,
    ) -> None:
        """`layer`: `CausalSelfAttention`'s keywords (dropout, bias, backend)."""
        super().__init__(embed_dim, num_heads, **layer)
        self.feature_map = spread_over_heads(feature_map, num_heads)
        head_groups(self.feature_map, num_heads)  # a ValueError naming a bad map
        self.eps, self.clamp = eps, clamp
        if key_gate and self.feature_map != "relu":
            raise ValueError(f"key_gate needs ReLU features, not feature_map={feature_map!r}")
        self.key_gate = nn.Linear(embed_dim, num_heads) if key_gate else None
        self.gate_mean: Tensor | None = None

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super()._heads(x)
        if self.key_gate is not None:
            gate = key_gate_value(self.key_gate(x))
            k = k * gate.unsqueeze(-1)
            if self.training:
                self.gate_mean = gate.mean()
        return q, k, v

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
            feature_map=self.feature_map,
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
        y, state = flow_attention_step(
            q, k, v, state, feature_map=self.feature_map, eps=self.eps, clamp=self.clamp
        )
        return self._out(y), state

    @torch.no_grad()
    def gates(self, x: Tensor) -> FlowAttentionGates:
        """For inspection, not training: the per-head features and gates this layer forms
        over x (B, L, E), one causal sequence per row, in float64 (`flow_attention_gates`)."""
        q, k, _ = self._heads(x)
        return flow_attention_gates(
            q.double(), k.double(), feature_map=self.feature_map, eps=self.eps, clamp=self.clamp
        )


class SoftmaxAttention(CausalSelfAttention):
    """Multi-head causal softmax attention on `scaled_dot_product_attention`."""

    def forward(self, x: Tensor, *, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        dropout = self.dropout.p if self.training else 0.0  # on the weights, as on the output

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            return y.transpose(1, 2)

        return self._attend_padded(x, cu_seqlens, attend)


@dataclass(frozen=True)
class AttentionKind:
    """What a `model.attention` name means: its layer and feature map, the source clamp
    (flow kinds: Flowformer's competition over sources, clamped at c), its backends, and
    whether it acts through a recurrent state, stepped in place (`InplaceFlowStep`)."""

    layer: type[CausalSelfAttention]
    feature_map: str | tuple[str, ...] | None = None  # flow kinds: phi, or maps over the heads
    clamp: bool = False  # takes `model.attention_clamp`
    key_gate: bool = False  # takes `model.key_gate` (ReLU features)
    inplace_step: bool = False  # `RecurrentStack` steps it on preallocated buffers

    @property
    def recurrent(self) -> bool:
        return self.layer.recurrent

    @property
    def backends(self) -> tuple[str, ...]:
        return self.layer.backends


ATTENTION_KINDS: dict[str, AttentionKind] = {
    "flow": AttentionKind(FlowAttention, "sigmoid", clamp=True, inplace_step=True),
    "flow-relu": AttentionKind(FlowAttention, "relu", clamp=True, key_gate=True, inplace_step=True),
    "flow-mixed": AttentionKind(FlowAttention, ("relu", "sigmoid"), clamp=True, inplace_step=True),
    "softmax": AttentionKind(SoftmaxAttention),
}


# kinds that existed once: their names get a pointer to what happened, not a plain "unknown"
REMOVED_KINDS = {
    "flow-sink": "was removed (no task where it helped: docs/flow-attention.md, "
    '"A variant that was removed")',
}


def attention_kind(name: str) -> AttentionKind:
    """The entry of ATTENTION_KINDS called `name`, or a ValueError that lists them."""
    if name in REMOVED_KINDS:
        raise ValueError(f"attention={name!r} {REMOVED_KINDS[name]}")
    if name not in ATTENTION_KINDS:
        raise ValueError(f"attention={name!r}: expected one of {', '.join(ATTENTION_KINDS)}")
    return ATTENTION_KINDS[name]


def make_attention(
    name: str,
    embed_dim: int,
    num_heads: int,
    *,
    dropout: float = 0.0,
    backend: str = "auto",
    clamp: float = DEFAULTS.clamp,
    eps: float = DEFAULTS.eps,
    key_gate: bool = False,
) -> CausalSelfAttention:
    """Builds the attention layer of kind `name` (a key of ATTENTION_KINDS); `clamp` and
    `eps` are the flow kinds' source clamp and normalisers' eps, and must stay at their
    defaults for the others; `key_gate` is for the kinds with ReLU features
    (`FlowAttention`)."""
    kind = attention_kind(name)
    kw: dict = {"dropout": dropout, "backend": backend}
    if kind.feature_map is not None:
        kw["feature_map"] = kind.feature_map
    if kind.clamp:
        kw["clamp"], kw["eps"] = clamp, eps
    elif clamp != DEFAULTS.clamp or eps != DEFAULTS.eps:
        raise ValueError(f"attention={name!r} has no clamp or eps, got {clamp=}, {eps=}")
    if kind.key_gate:
        kw["key_gate"] = key_gate
    elif key_gate:
        raise ValueError(f"attention={name!r} has no key gate (it needs ReLU features)")
    return kind.layer(embed_dim, num_heads, **kw)
