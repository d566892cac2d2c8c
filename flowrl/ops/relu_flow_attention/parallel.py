"""The ReLU-feature variant over whole sequences: Flow-Attention's flows, competition,
allocation and output with phi = relu in place of the sigmoid, on the library's parallel
backend (one block up to a few head dims, blocks that carry the sums beyond: O(L(d+m))
memory). Autograd differentiates the ReLU; the rest has the backend's own backward.

A token whose key projection is <= 0 in every entry has K = 0 exactly, so it adds nothing
to the key sum, the outflow sum or the value state: later outputs read it as if it were not
there, apart from the position t that scales the allocation. Sigmoid features are never 0,
so under Flow-Attention every token of a long sequence takes some share of the normaliser.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowrl.ops.flow_attention.api import parallel_by_length


def relu_flow_attention(
    q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6, clamp: float = 10.0
) -> Tensor:
    """q, k (B, L, H, d), v (B, L, H, m) -> out (B, L, H, m); each row one sequence from its
    first token (right padding is harmless: causal)."""
    qb, kb, vb = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, *)
    out, _ = parallel_by_length(
        qb, kb, vb, eps=eps, clamp=clamp, return_state=False, phi=torch.relu
    )
    return out.transpose(1, 2)
