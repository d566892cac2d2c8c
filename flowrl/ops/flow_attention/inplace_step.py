"""The recurrent step of causal Flow-Attention on preallocated buffers, updated in place.

The same arithmetic as `recurrent_flow_step` (the reference step), laid out for acting,
where a step is a few kilo-FLOPs and the cost is the number of tensor operations:

- the state is allocated once and updated in place; every intermediate has its buffer
  and every view of one is made once, so a step allocates nothing;
- the d-vector sums are stored shifted by eps (key_sum + eps, ...), so the spec's
  <a + eps, b + eps> needs no extra pass;
- the two flows, and then the sink and source, are computed together: the features
  phi(q), phi(k) are laid out as [Q, K, Q], whose slices [Q, K] and [K, Q] pair each feature
  with the sum it meets, so each pair is one multiply and one sum.

The tests hold it against `recurrent_flow_step` and the float64 reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowrl.ops.flow_attention.feature_maps import FEATURE_MAPS, head_groups
from flowrl.ops.flow_attention.protocol import DEFAULTS
from flowrl.ops.flow_attention.state import FlowAttentionState


class InplaceFlowStep:
    """One Flow-Attention layer's recurrent state for `batch` rows, stepped in place.

    `step(qkv, position)` takes the layer's raw projections (B, 3 * H * d) in `dtype`,
    laid out as the attention layer's `qkv` output ([q | k | v], heads inside each), and
    this token's 1-based positions (B,) in `state_dtype`; it returns the heads' output
    (B, H * d) in `dtype`, in a buffer that the next step overwrites.

    `state_dtype` (default `dtype`) is what the step computes and accumulates in. The sums
    grow with the position, and fp32 rounds each token's addition to a sum of 10^5 tokens
    to a few percent of itself; float64 does not, at the price of one copy in and one out
    per step. The error of a float32 state grows with the episode
    (`benchmarks/acting_precision.py`): a check, not the default.
    """

    def __init__(
        self,
        batch: int,
        heads: int,
        head_dim: int,
        *,
        eps: float = DEFAULTS.eps,
        clamp: float = DEFAULTS.clamp,
        feature_map: str | Sequence[str] = DEFAULTS.feature_map,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        state_dtype: torch.dtype | None = None,
    ) -> None:
        B, H, d = batch, heads, head_dim
        state_dtype = dtype if state_dtype is None else state_dtype
        self.shape, self.eps, self.clamp = (B, H, d), eps, clamp
        # phi per run of heads that share a map: (q and k of those heads, features out)
        self.phis = [
            (heads, FEATURE_MAPS[name].apply_out) for heads, name in head_groups(feature_map, H)
        ]

        def empty(*shape: int) -> Tensor:
            return torch.empty(*shape, device=device, dtype=state_dtype)

        # state: [key_sum, query_sum] + eps, [inflow_sum, outflow_sum] + eps, Z, S
        self.sums, self.flow_sums = empty(B, 2, H, d), empty(B, 2, H, d)
        self.competition_sum, self.kv = empty(B, H), empty(B, H, d, d)
        # scratch
        self.features, self.features_eps = empty(B, 3, H, d), empty(B, 3, H, d)  # [Q, K, Q]
        self.products, self.dots = empty(B, 2, H, d), empty(B, 2, H)
        self.flows, self.gates = empty(B, 2, H), empty(B, 2, H)
        self.source_exp, self.competition = empty(B, H), empty(B, H)
        self.scale, self.cv, self.read = empty(B, H), empty(B, H, d), empty(B, H, 1, d)
        self.out = empty(B, H, d)
        # the step's input and output in `dtype`, where it differs from the state's
        converts = state_dtype != dtype
        self.qkv_in = empty(B, 3 * H * d) if converts else None
        self.out_io = torch.empty(B, H * d, device=device, dtype=dtype) if converts else None
        # views, made once
        Q, K = self.features[:, 0], self.features[:, 1]
        self.q_and_k, self.k_and_q = self.features[:, :2], self.features[:, 1:]
        self.q_and_k_eps, self.k_and_q_eps = self.features_eps[:, :2], self.features_eps[:, 1:]
        self.Q, self.Q_row, self.K_col = Q, Q.unsqueeze(-2), K.unsqueeze(-1)
        self.flows_col = self.flows.unsqueeze(-1)
        self.inflow_dot = self.dots[:, 0]  # <Q + eps, key_sum + eps> = t / I
        self.source, self.sink = self.gates[:, 0], self.gates[:, 1]
        self.competition_col, self.cv_row = self.competition.unsqueeze(-1), self.cv.unsqueeze(-2)
        self.read_heads, self.scale_col = self.read.squeeze(-2), self.scale.unsqueeze(-1)
        self.out_flat = self.out.view(B, H * d)
        self._position: Tensor | None = None
        self.reset()

    def reset(self, rows: Tensor | None = None) -> None:
        """Starts the rows where `rows` (bool, (B,)) is True over from nothing; None: all."""
        if rows is None:
            self.sums.fill_(self.eps)
            self.flow_sums.fill_(self.eps)
            self.competition_sum.zero_()
            self.kv.zero_()
            return
        rows = rows.to(device=self.kv.device, dtype=torch.bool)
        self.sums.masked_fill_(rows.view(-1, 1, 1, 1), self.eps)
        self.flow_sums.masked_fill_(rows.view(-1, 1, 1, 1), self.eps)
        self.competition_sum.masked_fill_(rows.view(-1, 1), 0.0)
        self.kv.masked_fill_(rows.view(-1, 1, 1, 1), 0.0)

    def step(self, qkv: Tensor, position: Tensor) -> Tensor:
        """One token per row. `position` (B,) is a buffer the caller updates in place; its
        views are taken on the first call."""
        B, H, d = self.shape
        if self.qkv_in is not None:
            qkv = self.qkv_in.copy_(qkv)
        q_k_v = qkv.view(B, 3, H, d)
        if position is not self._position:  # views of the caller's position buffer, once
            self._position = position
            self._t, self._t_rows = position.view(B, 1, 1), position.view(B, 1)
        t, t_rows = self._t, self._t_rows
        # features [Q, K, Q] = phi([q, k, q]) and their eps-shifted copies
        for heads, phi in self.phis:
            phi(q_k_v[:, :2, heads], self.q_and_k[:, :, heads])
        self.features[:, 2].copy_(self.Q)
        torch.add(self.features, self.eps, out=self.features_eps)
        # key_sum += K, query_sum += Q (stored + eps); flows [I, O] = t / <[Q, K] + eps, those>
        self.sums.add_(self.k_and_q)
        torch.mul(self.q_and_k_eps, self.sums, out=self.products)
        torch.sum(self.products, -1, out=self.dots)
        torch.div(t, self.dots, out=self.flows)
        # inflow_sum += I Q, outflow_sum += O K; [source, sink] = <[K, Q] + eps, those + eps> / t
        self.flow_sums.addcmul_(self.flows_col, self.q_and_k)
        torch.mul(self.k_and_q_eps, self.flow_sums, out=self.products)
        torch.sum(self.products, -1, out=self.gates)
        self.gates.div_(t)
        # competition C = t exp(source) / sum exp(source); S += K (C v)^T; read Q^T S
        self.source.clamp_(-self.clamp, self.clamp)
        torch.exp(self.source, out=self.source_exp)
        self.competition_sum.add_(self.source_exp)
        torch.mul(self.source_exp, t_rows, out=self.competition)
        self.competition.div_(self.competition_sum)
        torch.mul(self.competition_col, q_k_v[:, 2], out=self.cv)
        self.kv.addcmul_(self.K_col, self.cv_row)
        torch.matmul(self.Q_row, self.kv, out=self.read)
        # out = sigmoid(sink) I / t * read, where I / t = 1 / <Q + eps, key_sum + eps>
        torch.sigmoid(self.sink, out=self.scale)
        self.scale.div_(self.inflow_dot)
        torch.mul(self.read_heads, self.scale_col, out=self.out)
        return self.out_flat if self.out_io is None else self.out_io.copy_(self.out_flat)

    def state(self, position: Tensor) -> FlowAttentionState:
        """A copy of the state as the reference step carries it, after `position` tokens."""
        return FlowAttentionState(
            key_sum=self.sums[:, 0] - self.eps,
            query_sum=self.sums[:, 1] - self.eps,
            outflow_sum=self.flow_sums[:, 1] - self.eps,
            inflow_sum=self.flow_sums[:, 0] - self.eps,
            competition_sum=self.competition_sum.clone(),
            kv=self.kv.clone(),
            position=position.to(device=self.kv.device, dtype=torch.long).clone(),
        )
