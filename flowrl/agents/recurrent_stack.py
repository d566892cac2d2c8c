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


def _linear(x: Tensor, layer: nn.Linear, out: Tensor) -> Tensor:
    """layer(x) written into `out`."""
    if layer.bias is None:
        return torch.mm(x, layer.weight.t(), out=out)
    return torch.addmm(layer.bias, x, layer.weight.t(), out=out)


class RecurrentStack:
    """The blocks of a flow `model` for `batch` rows, one embedded token per row per step."""

    def __init__(self, model: DecisionTransformer, batch: int) -> None:
        cfg = model.cfg
        if not model.recurrent:
            raise ValueError(f"attention={cfg.attention!r} has no recurrent form")
        weight = model.embed_state.weight
        device, dtype, E = weight.device, weight.dtype, cfg.embed_dim
        self.blocks = list(model.blocks)
        self.attention: list[InplaceFlowStep] = []
        for block in self.blocks:
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
        x, E = self.x, self.x.shape[1]
        x.copy_(token)
        self.position.add_(1.0)
        for block, attention in zip(self.blocks, self.attention, strict=True):
            ln_1, ln_2 = block.ln_1, block.ln_2
            h = F.layer_norm(x, (E,), ln_1.weight, ln_1.bias, ln_1.eps)
            y = attention.step(_linear(h, block.attn.qkv, self.qkv), self.position)
            x.add_(_linear(y, block.attn.proj, self.branch))
            h = F.layer_norm(x, (E,), ln_2.weight, ln_2.bias, ln_2.eps)
            fc, activation, proj = block.mlp[0], block.mlp[1], block.mlp[2]
            hidden = _linear(h, fc, self.hidden)
            hidden = hidden.relu_() if isinstance(activation, nn.ReLU) else activation(hidden)
            x.add_(_linear(hidden, proj, self.branch))
        return x
