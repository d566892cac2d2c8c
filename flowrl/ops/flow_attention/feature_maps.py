"""The feature maps phi that Flow-Attention applies to queries and keys, by name.

One entry per map: the map itself (autograd differentiates it in the PyTorch backends) and
its out= form for the in-place acting step. The Triton kernels spell each map and its
derivative once more (`triton_kernels._phi`, `_phi_grad`), written as a function of the
feature phi(x) rather than of x, so the backward never reloads raw projections:

    sigmoid  phi(x) = 1 / (1 + e^-x)    phi' = phi (1 - phi)
    relu     phi(x) = max(x, 0)         phi' = 1 where phi > 0, else 0

A third map is one entry here and one branch in each of those two Triton functions.
"""

from __future__ import annotations

from collections.abc import Callable
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
