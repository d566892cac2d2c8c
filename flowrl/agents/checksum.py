"""Checksums of an agent's tensors, stored in checkpoints and verified on load."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def tensors_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors`, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def agent_tensors(state: Mapping) -> dict[str, torch.Tensor]:
    """The tensors of an agent state dict that decide how it acts: weights and scales."""
    tensors = {f"model.{k}": v for k, v in state["model"].items()}
    for key, value in state["normalizer"].items():
        if isinstance(value, torch.Tensor):
            tensors[f"normalizer.{key}"] = value
    return tensors
