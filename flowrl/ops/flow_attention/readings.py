"""What Flow-Attention makes of each token, per head, for inspection: the feature-mapped
queries and keys and the gates of docs/flow-attention.md (competition C_t, source
exp(Ohat_t) and the competition's running normaliser Z_t). The backends never form these
for a caller; `flow_attention_gates` computes them once, from q and k alone, as
`FlowAttentionGates`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from flowrl.ops.flow_attention.gates import features, sequence_gates
from flowrl.ops.flow_attention.protocol import DEFAULTS, FlowOptions


@dataclass(frozen=True)
class FlowAttentionGates:
    """Per-head readings of one causal sequence; shapes (B, H, L, d) and (B, H, L)."""

    query_features: Tensor  # phi(q_t)
    key_features: Tensor  # phi(k_t)
    competition: Tensor  # C_t
    source_exp: Tensor  # exp(Ohat_t), Ohat clamped to [-c, c]
    competition_sums: Tensor  # Z_t = sum_{s<=t} exp(Ohat_s)

    def attention_weights(self, query: int = -1) -> Tensor:
        """(B, H, t + 1): the unnormalised weights <phi(q_t), phi(k_s)> C_s that query
        t = `query` gives each key s <= t (docs/flow-attention.md, Forward, step 6)."""
        t = range(self.query_features.shape[-2])[query]
        Q = self.query_features[..., t : t + 1, :]
        K = self.key_features[..., : t + 1, :]
        return (K @ Q.transpose(-1, -2)).squeeze(-1) * self.competition[..., : t + 1]


def flow_attention_gates(
    q: Tensor,
    k: Tensor,
    *,
    feature_map: str | Sequence[str] = DEFAULTS.feature_map,
    eps: float = DEFAULTS.eps,
    clamp: float = DEFAULTS.clamp,
) -> FlowAttentionGates:
    """The readings of causal Flow-Attention over q, k of shape (B, L, H, d) (the layout of
    `flow_attention`), with its `feature_map`, `eps` and `clamp`; computed in float32, or
    float64 for float64 inputs."""
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    Q, K, _, _ = features(q, k, k, None, feature_map)
    gates = sequence_gates(Q, K, FlowOptions(feature_map, eps, clamp))
    return FlowAttentionGates(
        query_features=Q,
        key_features=K,
        competition=gates.competition,
        source_exp=gates.source_exp,
        competition_sums=gates.competition_sums,
    )
