"""A flow Decision Transformer's blocks stepped one token at a time, for acting.

`DecisionTransformer.step` is the plain form: every block's `step`, allocating a new state
per token. Acting at batch 1 spends its time in the number of tensor operations, not in
arithmetic, so `RecurrentStack` runs the same blocks on buffers allocated once: the
attention state in place (`InplaceFlowStep`), the linear layers into preallocated outputs,
one shared position counter for every layer. Results equal `DecisionTransformer.step`
(tested); it reads the model's parameters on every step, so it follows training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowrl.agents.decision_transformer import DecisionTransformer
from flowrl.nn.attention import FlowAttention
from flowrl.ops.flow_attention.inplace_step import InplaceFlowStep


class _Linear:
    """An nn.Linear's parameters, read without module lookups, written into `out`."""

    def __init__(self, layer: nn.Linear) -> None:
        self.weight_t = layer.weight.detach().t()  # views: they follow in-place updates
        self.bias = None if layer.bias is None else layer.bias.detach()

    def __call__(self, x: Tensor, out: Tensor) -> Tensor:
        if self.bias is None:
            return torch.mm(x, self.weight_t, out=out)
        return torch.addmm(self.bias, x, self.weight_t, out=out)


class _LayerNorm:
    def __init__(self, layer: nn.LayerNorm) -> None:
        self.shape, self.eps = layer.normalized_shape, layer.eps
        self.weight = None if layer.weight is None else layer.weight.detach()
        self.bias = None if layer.bias is None else layer.bias.detach()

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class _Layer:
    """One block's parameters and attention state, gathered once."""

    def __init__(self, block: nn.Module, attention: InplaceFlowStep) -> None:
        self.ln_1, self.ln_2 = _LayerNorm(block.ln_1), _LayerNorm(block.ln_2)
        self.qkv, self.proj = _Linear(block.attn.qkv), _Linear(block.attn.proj)
        self.fc, self.fc_proj = _Linear(block.mlp[0]), _Linear(block.mlp[2])
        activation = block.mlp[1]
        self.relu = isinstance(activation, nn.ReLU)
        self.activation = activation
        self.attention = attention


class RecurrentStack:
    """The blocks of a flow `model` for `batch` rows, one embedded token per row per step."""

    def __init__(self, model: DecisionTransformer, batch: int) -> None:
        cfg = model.cfg
        if not model.recurrent:
            raise ValueError(f"attention={cfg.attention!r} has no recurrent form")
        weight = model.embed_state.weight
        device, dtype, E = weight.device, weight.dtype, cfg.embed_dim
        self.attention: list[InplaceFlowStep] = []
        for block in model.blocks:
            attn = block.attn
            assert isinstance(attn, FlowAttention)
            self.attention.append(
                InplaceFlowStep(
                    batch,
                    attn.num_heads,
                    attn.head_dim,
                    eps=attn.eps,
                    clamp=attn.clamp,
                    device=device,
                    dtype=dtype,
                )
            )
        self.layers = [_Layer(b, a) for b, a in zip(model.blocks, self.attention, strict=True)]
        self.position = torch.zeros(batch, device=device, dtype=dtype)  # tokens seen, per row

        def empty(width: int) -> Tensor:
            return torch.empty(batch, width, device=device, dtype=dtype)

        self.x, self.qkv, self.branch, self.hidden = empty(E), empty(3 * E), empty(E), empty(4 * E)

    def reset(self, rows: Tensor | None = None) -> None:
        """Starts the rows where `rows` (bool, (B,)) is True over; None: every row."""
        if rows is None:
            self.position.zero_()
        else:
            self.position.masked_fill_(rows.to(self.position.device, torch.bool), 0.0)
        for attention in self.attention:
            attention.reset(rows)

    @torch.inference_mode()
    def step(self, token: Tensor) -> Tensor:
        """token (B, E) -> the last block's output (B, E), in a buffer the next step reuses."""
        x, position, branch = self.x, self.position, self.branch
        x.copy_(token)
        position.add_(1.0)
        for layer in self.layers:
            y = layer.attention.step(layer.qkv(layer.ln_1(x), self.qkv), position)
            x.add_(layer.proj(y, branch))
            hidden = layer.fc(layer.ln_2(x), self.hidden)
            hidden = hidden.relu_() if layer.relu else layer.activation(hidden)
            x.add_(layer.fc_proj(hidden, branch))
        return x
