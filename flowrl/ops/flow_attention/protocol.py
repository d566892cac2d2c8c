"""What every backend takes and returns, and the one place that holds the op's defaults.

A backend is called as `backend(batch, options, return_state)`: `batch` the sequences laid
out for it, `options` the op's settings. It returns the output (B, H, L, m) in q's dtype
and, with `return_state`, the state after each row's (or packed sequence's) last token,
else None. `api.BACKENDS` holds them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from flowrl.ops.flow_attention.state import FlowAttentionState


@dataclass(frozen=True)
class FlowOptions:
    """The op's settings: phi by name (`feature_maps.FEATURE_MAPS`), or one name per head;
    eps; the source clamp c (docs/flow-attention.md). The defaults here are the op's
    everywhere, and the default map is that of the default attention kind, `flow-relu`."""

    feature_map: str | Sequence[str] = "relu"
    eps: float = 1e-6
    clamp: float = 10.0


DEFAULTS = FlowOptions()


@dataclass(frozen=True)
class FlowBatch:
    """q, k (B, H, L, d) and v (B, H, L, m) as a backend takes them. Row b holds
    `lengths[b]` tokens (None: all L; tokens after them are ignored), or, with `offsets`
    (flash-attn's cu_seqlens as a tuple, B = 1), sequences packed end to end along the row,
    for backends that take them as they lie. Each row or sequence continues from its row of
    `initial_state` (None: from nothing)."""

    q: Tensor
    k: Tensor
    v: Tensor
    lengths: Tensor | None = None
    offsets: tuple[int, ...] | None = None
    initial_state: FlowAttentionState | None = None


Backend = Callable[[FlowBatch, FlowOptions, bool], tuple[Tensor, FlowAttentionState | None]]
