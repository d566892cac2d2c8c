"""The feature maps phi that Flow-Attention applies to queries and keys, by name.

One entry per map: the map itself (autograd differentiates it in the PyTorch backends) and
its out= form for the in-place acting step. The Triton kernels spell each map and its
derivative once more (`triton_kernels._phi`, `_phi_grad`), written as a function of the
feature phi(x) rather than of x, so the backward never reloads raw projections:

    sigmoid  phi(x) = 1 / (1 + e^-x)    phi' = phi (1 - phi)
    relu     phi(x) = max(x, 0)         phi' = 1 where phi > 0, else 0

A third map is one entry here and one branch in each of those two Triton functions.

Every op takes `feature_map` as one name for all heads, or a sequence of names, one per
head: heads of different maps side by side in one layer (`head_groups`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FeatureMap:
    """phi for sequences (`apply`) and phi written into a preallocated buffer (`apply_out`)."""

    apply: Callable[[Tensor], Tensor]
    apply_out: Callable[[Tensor, Tensor], Tensor]


FEATURE_MAPS: dict[str, FeatureMap] = {
    "sigmoid": FeatureMap(torch.sigmoid, lambda x, out: torch.sigmoid(x, out=out)),
    "relu": FeatureMap(torch.relu, lambda x, out: torch.clamp(x, min=0.0, out=out)),
}


def get_feature_map(name: str) -> FeatureMap:
    """The registry's entry for `name`, or a ValueError that lists the choices."""
    if name not in FEATURE_MAPS:
        raise ValueError(f"feature_map={name!r}: expected one of {', '.join(FEATURE_MAPS)}")
    return FEATURE_MAPS[name]


def head_groups(feature_map: str | Sequence[str], heads: int) -> list[tuple[slice, str]]:
    """Runs of consecutive heads that share a map, as (heads slice, name); one run for a
    single name. Checks every name and that a sequence has one name per head."""
    names = [feature_map] * heads if isinstance(feature_map, str) else list(feature_map)
    if len(names) != heads:
        raise ValueError(f"feature_map={feature_map!r} names {len(names)} maps for {heads} heads")
    for name in set(names):
        get_feature_map(name)
    groups, start = [], 0
    for head in range(1, heads + 1):
        if head == heads or names[head] != names[start]:
            groups.append((slice(start, head), names[start]))
            start = head
    return groups


def apply_by_heads(x: Tensor, feature_map: str | Sequence[str], head_dim: int) -> Tensor:
    """phi of x, each head (index along `head_dim`) through its own map."""
    if isinstance(feature_map, str):
        return get_feature_map(feature_map).apply(x)
    groups = head_groups(feature_map, x.shape[head_dim])
    parts = [
        FEATURE_MAPS[name].apply(x.narrow(head_dim, heads.start, heads.stop - heads.start))
        for heads, name in groups
    ]
    return torch.cat(parts, head_dim)
