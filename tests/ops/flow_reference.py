"""An independent float64 evaluation of the Flow-Attention spec, for tests only.

It transcribes docs/flow-attention.md with explicit L x L masks (every sum_{s<=t} is a
product with a lower-triangular matrix) instead of the cumulative sums and chunking the
library uses, so it shares no code and no algorithm with the backends it checks.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _features(x: Tensor, feature_map: str) -> Tensor:
    """phi: the spec's sigmoid, or ReLU ("Feature maps")."""
    if feature_map == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-x))
    if feature_map == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    raise ValueError(f"the reference has no feature map {feature_map!r}")


def _reference_gates(
    q: Tensor, k: Tensor, eps: float, clamp: float, feature_map: str = "sigmoid"
) -> tuple[Tensor, ...]:
    """Features and gates of the spec, (B, H, L, *) float64: Q, K, the mask M (M[t, s] = 1
    where s <= t), positions t, I_t, A_t and exp(Ohat_t)."""
    L = q.shape[-2]
    Q, K = _features(q, feature_map), _features(k, feature_map)
    M = torch.ones(L, L, dtype=torch.float64).tril()
    t = torch.arange(1, L + 1, dtype=torch.float64)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(-1)

    I = t / dot(Q + eps, M @ K + eps)
    O = t / dot(K + eps, M @ Q + eps)
    I_hat = dot(Q + eps, M @ (O.unsqueeze(-1) * K) + eps) / t
    O_hat = torch.clamp(dot(K + eps, M @ (I.unsqueeze(-1) * Q) + eps) / t, -clamp, clamp)
    A = 1.0 / (1.0 + torch.exp(-I_hat))
    return Q, K, M, t, I, A, torch.exp(O_hat)


def reference_flow_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-6,
    clamp: float = 10.0,
    feature_map: str = "sigmoid",
) -> Tensor:
    """q, k (B, L, H, d), v (B, L, H, m) -> out (B, L, H, m) in float64, differentiable."""
    q, k, v = (x.to(torch.float64).transpose(1, 2) for x in (q, k, v))  # (B, H, L, *)
    Q, K, M, t, I, A, E = _reference_gates(q, k, eps, clamp, feature_map)
    C = t * E / (M @ E.unsqueeze(-1)).squeeze(-1)  # C_s = s exp(Ohat_s) / Z_s
    scores = (Q @ K.transpose(-1, -2)) * M  # <Q_t, K_s> for s <= t
    out = (A * I / t).unsqueeze(-1) * (scores @ (C.unsqueeze(-1) * v))
    return out.transpose(1, 2)


def relative_error(x: Tensor, ref: Tensor) -> float:
    """||x - ref|| / ||ref||, in float64; inf when x is not finite."""
    x, ref = x.detach().to(torch.float64), ref.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        return float("inf")
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


def random_qkv(
    B: int,
    L: int,
    H: int,
    d: int,
    m: int,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    scale: float = 1.0,
    device: str | torch.device = "cpu",
) -> list[Tensor]:
    """Seeded q, k (B, L, H, d) and v (B, L, H, m) leaves that require gradients."""
    g = torch.Generator().manual_seed(seed)
    q, k = (scale * torch.randn(B, L, H, d, generator=g) for _ in range(2))
    v = torch.randn(B, L, H, m, generator=g)
    return [x.to(device, dtype).requires_grad_() for x in (q, k, v)]


def reference_by_heads(q: Tensor, k: Tensor, v: Tensor, feature_maps, **kw) -> Tensor:
    """The reference with head h of q, k, v (B, L, H, *) through feature_maps[h]."""
    return torch.cat(
        [
            reference_flow_attention(
                q[:, :, [h]], k[:, :, [h]], v[:, :, [h]], feature_map=name, **kw
            )
            for h, name in enumerate(feature_maps)
        ],
        2,
    )
