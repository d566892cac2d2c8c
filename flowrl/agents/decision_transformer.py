"""Decision Transformer (Chen et al. 2021) with a choice of causal attention.

Three tokens per timestep (return-to-go, state, action), each with its own embedding,
plus a learned timestep embedding; pre-LN causal blocks; the action of step t is read
from the hidden state of its state token and squashed with tanh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.nn import FlowAttention, make_attention
from flowrl.ops import FlowAttentionState, PackedSequences

CONTEXT_MODES = ("window", "episode")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass
class DecisionTransformerConfig:
    state_dim: int
    act_dim: int
    embed_dim: int = 128
    n_layers: int = 3
    n_heads: int = 1
    attention: str = "flow"  # "flow" | "softmax"
    context_mode: str = "window"  # "window": last K steps; "episode": the whole episode so far
    context_len: int = 20  # K in window mode; the longest training prefix in episode mode
    max_timestep: int = 1000  # size of the timestep embedding (episode length limit)
    dropout: float = 0.1
    activation: str = "relu"
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        if self.context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode={self.context_mode!r}: expected one of {CONTEXT_MODES}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected one of {list(ACTIVATIONS)}")
        if self.embed_dim % self.n_heads:
            raise ValueError(
                f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}"
            )
        if self.context_mode == "episode" and self.attention != "flow":
            raise ValueError("context_mode='episode' needs attention='flow' (linear in length)")


class Block(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        kwargs = {"dropout": cfg.dropout}
        if cfg.attention == "flow":
            kwargs["backend"] = cfg.attention_backend
        self.ln_1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = make_attention(cfg.attention, cfg.embed_dim, cfg.n_heads, **kwargs)
        self.ln_2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embed_dim, 4 * cfg.embed_dim),
            ACTIVATIONS[cfg.activation](),
            nn.Linear(4 * cfg.embed_dim, cfg.embed_dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, cu_seqlens: Tensor | PackedSequences | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cu_seqlens=cu_seqlens)
        return x + self.mlp(self.ln_2(x))

    def step(
        self, x: Tensor, state: FlowAttentionState | None
    ) -> tuple[Tensor, FlowAttentionState]:
        """One token per row through the block's recurrent form (flow attention only)."""
        y, state = self.attn.step(self.ln_1(x), state)
        x = x + y
        return x + self.mlp(self.ln_2(x)), state


class DecisionTransformer(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        E = cfg.embed_dim
        self.embed_timestep = nn.Embedding(cfg.max_timestep, E)
        self.embed_return = nn.Linear(1, E)
        self.embed_state = nn.Linear(cfg.state_dim, E)
        self.embed_action = nn.Linear(cfg.act_dim, E)
        self.embed_ln = nn.LayerNorm(E)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(E)
        self.predict_action = nn.Linear(E, cfg.act_dim)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed(
        self, states: Tensor, actions: Tensor, returns_to_go: Tensor, timesteps: Tensor
    ) -> Tensor:
        """(B, T, *) inputs -> (B, 3T, E) tokens ordered R_1, s_1, a_1, R_2, ..."""
        time = self.embed_timestep(timesteps.clamp(max=self.cfg.max_timestep - 1))
        tokens = torch.stack(
            [
                self.embed_return(returns_to_go.unsqueeze(-1)) + time,
                self.embed_state(states) + time,
                self.embed_action(actions) + time,
            ],
            dim=2,
        ).flatten(1, 2)
        return self.drop(self.embed_ln(tokens))

    def forward(
        self,
        states: Tensor,
        actions: Tensor,
        returns_to_go: Tensor,
        timesteps: Tensor,
        cu_seqlens: Tensor | None = None,
    ) -> Tensor:
        """Predicted actions (B, T, act_dim). `cu_seqlens` (offsets in timesteps) packs
        episodes along T with B = 1; each attends only within itself."""
        x = self.embed(states, actions, returns_to_go, timesteps)
        token_cu = None  # offsets in tokens, checked and indexed once for every block
        if cu_seqlens is not None:
            token_cu = PackedSequences.from_offsets(3 * cu_seqlens, x.shape[1])
        for block in self.blocks:
            x = block(x, token_cu)
        return torch.tanh(self.predict_action(self.ln_f(x[:, 1::3])))

    @property
    def recurrent(self) -> bool:
        """Whether the model can act token by token at constant cost (flow attention)."""
        return isinstance(self.blocks[0].attn, FlowAttention)

    def step(
        self, token: Tensor, states: list[FlowAttentionState | None]
    ) -> tuple[Tensor, list[FlowAttentionState]]:
        """One already-embedded token (B, E) through every block's recurrent form."""
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            token, state = block.step(token, state)
            new_states.append(state)
        return token, new_states

    def action_from_hidden(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.predict_action(self.ln_f(hidden)))


def action_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the action dims of real (mask True) steps."""
    mask = mask.to(predicted.dtype).unsqueeze(-1)
    squared = F.mse_loss(predicted, target, reduction="none") * mask
    return squared.sum() / (mask.sum() * predicted.shape[-1]).clamp_min(1.0)
