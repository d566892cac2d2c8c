"""Decision Transformer (Chen et al. 2021) with a choice of causal attention.

Three tokens per timestep (return-to-go, state, action), each with its own embedding,
plus a learned timestep embedding (or none: then the causal attention's order is the only
position signal); pre-LN causal blocks; the action of step t is read from the hidden state
of its state token by the action head: tanh-squashed actions for a continuous action space,
logits over the n actions for a discrete one (whose action tokens are one-hot vectors).

`DecisionTransformerConfig` is the one model configuration: the `model` section of a
training config, validated once, against the choices the layers themselves declare.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.agents.state_encoder import GRID_STATE_DIM, STATE_ENCODERS, make_state_encoder
from flowrl.errors import UserError, check_choice, check_types
from flowrl.nn import attention_kind, make_attention
from flowrl.ops import PackedSequences
from flowrl.ops.flow_attention import FlowOptions

CONTEXT_MODES = ("window", "episode")
# ReLU features: the kind that remembers (T-Maze) and matches sigmoid and softmax where a
# window suffices (docs/choosing-attention.md)
DEFAULT_ATTENTION = "flow-relu"
SPEC_CLAMP = FlowOptions().clamp  # the op's source clamp c (docs/flow-attention.md)
SPEC_EPS = FlowOptions().eps  # the op's eps in every normaliser
TIMESTEP_EMBEDDINGS = ("learned", "none")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
TOKEN_KINDS = ("return", "state", "action")  # the order of a timestep's tokens


@dataclass
class DecisionTransformerConfig:
    """Architecture. `state_dim`, `act_dim` and `discrete` are the data's: an agent sets them
    up from its dataset (`act_dim` = n for a Discrete(n) action space, with `discrete` True).
    Settings that do not change the result: `attention_backend`.

    `timestep_embedding`: "learned" adds an embedding of each token's step in its episode
    (steps from `max_timestep` - 1 on share the last one); "none" adds nothing, so a policy
    meets no unseen embedding when it acts in episodes longer than any it trained on.

    `attention_clamp`: the source clamp c of flow attention (docs/flow-attention.md; the
    specification's 10 by default). It bounds how far one token can outweigh the rest of
    its episode in the competition's normaliser.

    `attention_eps`: the eps of flow attention's normalisers (the specification's 1e-6 by
    default). Where a head's keys are closed, its flows grow with the position and eps sets
    a length, about 1 / eps tokens, past which the sources of closed tokens climb to the
    clamp (docs/long-context.md); a smaller eps moves that length out.

    `key_gate`: the `flow-relu` kind's learned per-head gate on each token's keys
    (`flowrl.nn.FlowAttention`): a token gated to exactly 0 drops out of every later read,
    so the rest of a long episode cannot dilute what the model keeps.
    `key_gate_penalty` adds that many times the mean gate (over tokens, heads and blocks) to
    the training loss: it closes the gates of tokens the actions do not need.

    `state_encoder`: "linear" (a linear layer over the standardised observation) or "grid"
    (learned embeddings of MiniGrid-Memory's raw cell codes, flowrl/agents/state_encoder.py;
    its states are not standardised). Checkpoints without it are "linear".
    """

    state_dim: int | None = None
    act_dim: int | None = None
    embed_dim: int = 128
    n_layers: int = 3
    n_heads: int = 1
    attention: str = DEFAULT_ATTENTION  # a key of flowrl.nn.ATTENTION_KINDS
    context_mode: str = "window"  # "window": last K steps; "episode": the whole episode so far
    context_len: int = 20  # K in window mode; the longest training prefix in episode mode
    max_timestep: int = 1000  # size of the learned timestep embedding
    timestep_embedding: str = "learned"  # learned | none
    discrete: bool = False  # Discrete(act_dim) actions: one-hot tokens, a categorical head
    dropout: float = 0.1
    activation: str = "relu"
    attention_backend: str = "auto"  # one of the attention layer's `backends`
    attention_clamp: float = SPEC_CLAMP  # the flow kinds: the source clamp c
    attention_eps: float = SPEC_EPS  # the flow kinds: eps of the normalisers
    key_gate: bool = False  # flow-relu: gate each token's keys (docstring)
    key_gate_penalty: float = 0.0  # weight of the mean gate in the training loss
    state_encoder: str = "linear"  # linear | grid

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A UserError naming the `model.*` key of the first bad value."""
        check_types(self, "model.")  # model.embed_dim=True is no size
        try:
            kind = attention_kind(self.attention)  # names the kinds, or says one was removed
        except ValueError as err:
            raise UserError(f"model.{err}") from None
        backends = kind.backends
        check_choice("model.attention_backend", self.attention_backend, backends)
        check_choice("model.context_mode", self.context_mode, CONTEXT_MODES)
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
        check_choice("model.timestep_embedding", self.timestep_embedding, TIMESTEP_EMBEDDINGS)
        check_choice("model.state_encoder", self.state_encoder, STATE_ENCODERS)
        sizes = {
            "model.embed_dim": self.embed_dim,
            "model.n_layers": self.n_layers,
            "model.n_heads": self.n_heads,
            "model.context_len": self.context_len,
            "model.max_timestep": self.max_timestep,
            "model.state_dim": self.state_dim,
            "model.act_dim": self.act_dim,
        }
        for key, value in sizes.items():
            if value is not None and value <= 0:
                raise UserError(f"{key}={value}: expected a positive number")
        flow_settings = {  # the flow kinds' op settings: key -> (value, the spec's, its name)
            "attention_clamp": (self.attention_clamp, SPEC_CLAMP, "a clamp"),
            "attention_eps": (self.attention_eps, SPEC_EPS, "an eps"),
        }
        for key, (value, spec, what) in flow_settings.items():
            if not value > 0:
                raise UserError(f"model.{key}={value}: expected a number > 0")
            if value != spec and not kind.clamp:
                raise UserError(
                    f"model.{key}={value}: only flow attentions have {what}, "
                    f"not model.attention={self.attention}"
                )
        if self.key_gate and not kind.key_gate:
            raise UserError(
                f"model.key_gate=true needs ReLU features (model.attention=flow-relu), "
                f"not model.attention={self.attention}"
            )
        if not self.key_gate_penalty >= 0:
            raise UserError(
                f"model.key_gate_penalty={self.key_gate_penalty}: expected a number >= 0"
            )
        if self.key_gate_penalty and not self.key_gate:
            raise UserError(
                f"model.key_gate_penalty={self.key_gate_penalty} needs model.key_gate=true"
            )
        if self.state_encoder == "grid" and self.state_dim not in (None, GRID_STATE_DIM):
            raise UserError(
                f"model.state_encoder=grid reads MiniGrid-Memory observations of "
                f"{GRID_STATE_DIM} numbers, not model.state_dim={self.state_dim}"
            )
        if not isinstance(self.discrete, bool):
            raise UserError(f"model.discrete={self.discrete!r}: expected true or false")
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout={self.dropout}: expected a number in [0, 1)")
        if self.embed_dim % self.n_heads:
            raise UserError(
                f"model.embed_dim={self.embed_dim} must be divisible by "
                f"model.n_heads={self.n_heads}"
            )


class Block(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = make_attention(
            cfg.attention,
            cfg.embed_dim,
            cfg.n_heads,
            dropout=cfg.dropout,
            backend=cfg.attention_backend,
            clamp=cfg.attention_clamp,
            eps=cfg.attention_eps,
            key_gate=cfg.key_gate,
        )
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

    def step(self, x: Tensor, state: object | None) -> tuple[Tensor, object]:
        """One token per row through the block's recurrent form."""
        y, state = self.attn.step(self.ln_1(x), state)
        x = x + y
        return x + self.mlp(self.ln_2(x)), state


class DecisionTransformer(nn.Module):
    def __init__(self, cfg: DecisionTransformerConfig) -> None:
        super().__init__()
        if cfg.state_dim is None or cfg.act_dim is None:
            raise ValueError("DecisionTransformerConfig needs state_dim and act_dim to build")
        self.cfg = cfg
        E = cfg.embed_dim
        if cfg.timestep_embedding == "learned":
            self.embed_timestep = nn.Embedding(cfg.max_timestep, E)
        self.embed_return = nn.Linear(1, E)
        self.embed_state = make_state_encoder(cfg.state_encoder, cfg.state_dim, E)
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

    @property
    def recurrent(self) -> bool:
        """Whether the model can act token by token at constant cost (`step`)."""
        return attention_kind(self.cfg.attention).recurrent

    def set_attention_eps(self, eps: float) -> None:
        """Compute every flow layer with normalisers' eps `eps` from now on (the recurrent form
        reads it when a `RecurrentStack` is built). Below about 1 / eps tokens the model
        computes what it did; past that a smaller eps keeps closed tokens' sources where
        training left them (`attention_eps`). A UserError naming `model.attention_eps` if
        the kind has no eps or `eps` is not > 0."""
        self.cfg = replace(self.cfg, attention_eps=eps)  # validates
        if attention_kind(self.cfg.attention).clamp:  # the kinds with the flow op's settings
            for block in self.blocks:
                block.attn.eps = eps

    def key_gate_mean(self) -> Tensor:
        """The mean key gate over the blocks in the last training forward (`key_gate`)."""
        return torch.stack([block.attn.gate_mean for block in self.blocks]).mean()

    def embed_tokens(self, kind: str, values: Tensor, timesteps: Tensor) -> Tensor:
        """Tokens of one kind at their timesteps, (..., E), before dropout.

        `values`: returns-to-go (...), states (..., state_dim) or actions (..., act_dim),
        in the model's scale (discrete actions one-hot); timesteps past `max_timestep` reuse
        its last embedding, and are not used at all without a timestep embedding.
        """
        if kind == "return":
            values, embed = values.unsqueeze(-1), self.embed_return
        elif kind == "state":
            embed = self.embed_state
        elif kind == "action":
            embed = self.embed_action
        else:
            raise ValueError(f"kind={kind!r}: expected one of {', '.join(TOKEN_KINDS)}")
        x = embed(values)
        if self.cfg.timestep_embedding == "learned":
            x = x + self.embed_timestep(timesteps.clamp(max=self.cfg.max_timestep - 1))
        return self.embed_ln(x)

    def action_head(self, hidden: Tensor) -> Tensor:
        """Hidden states of state tokens (..., E) -> actions (..., act_dim) in [-1, 1], or
        for discrete actions the logits (..., n) of a categorical distribution over them."""
        out = self.predict_action(self.ln_f(hidden))
        return out if self.cfg.discrete else torch.tanh(out)

    def forward(
        self,
        states: Tensor,
        actions: Tensor,
        returns_to_go: Tensor,
        timesteps: Tensor,
        cu_seqlens: Tensor | None = None,
    ) -> Tensor:
        """Predicted actions (B, T, act_dim), logits for discrete actions. `cu_seqlens`
        (offsets in timesteps) packs episodes along T with B = 1; each attends only within
        itself."""
        values = {"return": returns_to_go, "state": states, "action": actions}
        tokens = [self.embed_tokens(kind, values[kind], timesteps) for kind in TOKEN_KINDS]
        x = self.drop(torch.stack(tokens, dim=2).flatten(1, 2))  # R_1, s_1, a_1, R_2, ...
        token_cu = None  # offsets in tokens, checked and indexed once for every block
        if cu_seqlens is not None:
            token_cu = PackedSequences.from_offsets(3 * cu_seqlens, x.shape[1])
        for block in self.blocks:
            x = block(x, token_cu)
        return self.action_head(x[:, 1::3])

    def step(self, token: Tensor, states: list[object | None]) -> tuple[Tensor, list[object]]:
        """One embedded token per row (B, E) through every block's recurrent form; returns
        the last hidden state (B, E) and the blocks' next states."""
        new_states = []
        for block, state in zip(self.blocks, states, strict=True):
            token, state = block.step(token, state)
            new_states.append(state)
        return token, new_states


def action_loss(predicted: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over the action dims of real (`valid`) steps."""
    weight = valid.to(predicted.dtype).unsqueeze(-1)
    squared = F.mse_loss(predicted, target, reduction="none") * weight
    return squared.sum() / (weight.sum() * predicted.shape[-1]).clamp_min(1.0)


def discrete_action_loss(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Cross-entropy of the data's actions (`target`, one-hot (..., n)) under the predicted
    `logits` (..., n), averaged over real (`valid`) steps."""
    nll = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    weight = valid.to(nll.dtype)
    return (nll * weight).sum() / weight.sum().clamp_min(1.0)
