"""The recurrent state of causal Flow-Attention: every prefix sum the spec carries."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class FlowAttentionState:
    """State after `position` tokens, per batch row and head (docs/flow-attention.md).

    Shapes, for batch B, heads H, key dim d, value dim m (always fp32, or fp64 for fp64 inputs):
        key_sum        Kc = sum K_s            (B, H, d)
        query_sum      Qc = sum Q_s            (B, H, d)
        outflow_sum    Sk = sum O_s K_s        (B, H, d)
        inflow_sum     Sq = sum I_s Q_s        (B, H, d)
        competition_sum Z = sum exp(Ohat_s)    (B, H)
        kv             S  = sum K_s (C_s v_s)^T (B, H, d, m)
        position       t, tokens seen so far   (B,) int64
    """

    key_sum: Tensor
    query_sum: Tensor
    outflow_sum: Tensor
    inflow_sum: Tensor
    competition_sum: Tensor
    kv: Tensor
    position: Tensor

    @classmethod
    def zeros(
        cls,
        batch: int,
        heads: int,
        key_dim: int,
        value_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> FlowAttentionState:
        def vec() -> Tensor:
            return torch.zeros(batch, heads, key_dim, device=device, dtype=dtype)

        return cls(
            key_sum=vec(),
            query_sum=vec(),
            outflow_sum=vec(),
            inflow_sum=vec(),
            competition_sum=torch.zeros(batch, heads, device=device, dtype=dtype),
            kv=torch.zeros(batch, heads, key_dim, value_dim, device=device, dtype=dtype),
            position=torch.zeros(batch, device=device, dtype=torch.long),
        )

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def map(self, fn) -> FlowAttentionState:
        """A new state with `fn` applied to every tensor (indexing rows, moving devices...)."""
        return FlowAttentionState(**{name: fn(t) for name, t in self.tensors().items()})

    def heads(self, heads: slice) -> FlowAttentionState:
        """The state of some heads only (every tensor but the 1-D `position` is per head)."""
        return self.map(lambda t: t if t.dim() == 1 else t[:, heads])

    @classmethod
    def cat(cls, states: list[FlowAttentionState]) -> FlowAttentionState:
        """The states of consecutive runs of heads as one state over all of them."""
        names = [f.name for f in fields(cls) if f.name != "position"]
        return cls(
            **{n: torch.cat([getattr(s, n) for s in states], 1) for n in names},
            position=states[0].position,
        )

    def reset(self, rows: Tensor) -> FlowAttentionState:
        """A new state whose rows where `rows` (bool, (B,)) is True start over from nothing."""
        keep = ~rows.to(device=self.position.device, dtype=torch.bool)

        def zero_rows(t: Tensor) -> Tensor:
            return t * keep.view(-1, *([1] * (t.dim() - 1))).to(t.dtype)

        return self.map(zero_rows)
