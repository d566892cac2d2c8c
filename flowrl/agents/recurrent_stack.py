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
from torch import Tensor, nn

from flowrl.agents.decision_transformer import DecisionTransformer
from flowrl.nn import attention_kind
from flowrl.nn.attention import key_gate_value
from flowrl.ops.flow_attention.inplace_step import InplaceFlowStep


def _linear(layer: nn.Linear) -> tuple[Tensor, Tensor]:
    """(bias, weight^T) of `layer` for `torch.addmm`: views that follow in-place updates."""
    weight = layer.weight.detach()
    bias = weight.new_zeros(weight.shape[0]) if layer.bias is None else layer.bias.detach()
    return bias, weight.t()


def _norm(layer: nn.LayerNorm) -> tuple[Tensor | None, Tensor | None, float]:
    """(weight, bias, eps) of `layer` for `torch.layer_norm`."""
    weight = None if layer.weight is None else layer.weight.detach()
    return weight, None if layer.bias is None else layer.bias.detach(), layer.eps


def _addmm(linear: tuple[Tensor, Tensor], x: Tensor, out: Tensor) -> Tensor:
    return torch.addmm(linear[0], x, linear[1], out=out)


class _Layer:
    """One block's parameters and attention state, gathered once (no module lookups)."""

    def __init__(self, block: nn.Module, attention: InplaceFlowStep) -> None:
        self.ln_1, self.ln_2 = _norm(block.ln_1), _norm(block.ln_2)
        self.qkv, self.proj = _linear(block.attn.qkv), _linear(block.attn.proj)
        gate = block.attn.key_gate
        self.key_gate = None if gate is None else _linear(gate)
        self.fc, self.fc_proj = _linear(block.mlp[0]), _linear(block.mlp[2])
        self.activation = block.mlp[1]
        self.relu = isinstance(self.activation, nn.ReLU)
        self.attention = attention


class RecurrentStack:
    """The blocks of a flow `model` for `batch` rows, one embedded token per row per step.
    `state_dtype` is the attention state's (`InplaceFlowStep`), default the model's."""

    def __init__(
        self,
        model: DecisionTransformer,
        batch: int,
        *,
        state_dtype: torch.dtype | None = None,
    ) -> None:
        cfg = model.cfg
        if not attention_kind(cfg.attention).inplace_step:
            raise ValueError(f"attention={cfg.attention!r} has no in-place recurrent step")
        weight = model.embed_return.weight  # the embeddings' device and dtype
        device, dtype, E = weight.device, weight.dtype, cfg.embed_dim
        self.attention: list[InplaceFlowStep] = []
        for block in model.blocks:
            attn = block.attn
            self.attention.append(
                InplaceFlowStep(
                    batch,
                    attn.num_heads,
                    attn.head_dim,
                    eps=attn.eps,
                    clamp=attn.clamp,
                    feature_map=attn.feature_map,
                    device=device,
                    dtype=dtype,
                    state_dtype=state_dtype,
                )
            )
        self.layers = [_Layer(b, a) for b, a in zip(model.blocks, self.attention, strict=True)]
        # tokens seen, per row, in the attention state's dtype
        self.position = torch.zeros(batch, device=device, dtype=state_dtype or dtype)

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
        x, position, branch, shape = self.x, self.position, self.branch, self.x.shape[1:]
        x.copy_(token)
        position.add_(1.0)
        for layer in self.layers:
            h = torch.layer_norm(x, shape, *layer.ln_1)
            qkv = _addmm(layer.qkv, h, self.qkv)
            if layer.key_gate is not None:  # the keys' third of qkv, times each head's gate
                gate = key_gate_value(torch.addmm(layer.key_gate[0], h, layer.key_gate[1]))
                rows, heads = gate.shape
                qkv.view(rows, 3, heads, -1)[:, 1].mul_(gate.unsqueeze(-1))
            y = layer.attention.step(qkv, position)
            x.add_(_addmm(layer.proj, y, branch))
            h = torch.layer_norm(x, shape, *layer.ln_2)
            hidden = _addmm(layer.fc, h, self.hidden)
            hidden = hidden.relu_() if layer.relu else layer.activation(hidden)
            x.add_(_addmm(layer.fc_proj, hidden, branch))
        return x
