"""The checkpoint file format: a torch.save'd dict of plain tensors, numbers and strings.

`{"agent": <agent state>, ...}`: the agent's part carries the format tag and a checksum of
the tensors that decide how it acts; a training checkpoint adds the loop's state beside it
(step, optimiser, sampler and RNG states, the run's config). Written atomically, read with
`weights_only=True`, and every failure to read is one UserError naming the file.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flowrl.errors import UserError
from flowrl.files import write_atomic

CHECKPOINT_FORMAT = "flowrl-decision-transformer-2"


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


def seal(agent_state: dict[str, Any]) -> dict[str, Any]:
    """`agent_state` with the format tag and the checksum of its tensors (verified on load)."""
    state = {"format": CHECKPOINT_FORMAT, **agent_state}
    state["checksum"] = tensors_checksum(agent_tensors(state))
    return state


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: never half-written.

    The bytes are built in memory and written with plain file I/O (then fsync'd), so a
    failed write (e.g. a full disk) is an OSError, and the previous file at `path` stays.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getbuffer())
    except OSError as err:
        kept = "; the previous one is kept" if path.is_file() else ""
        raise UserError(f"cannot write checkpoint {path}: {err.strerror or err}{kept}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents; a UserError unless it is an intact flowrl checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    state = read_checkpoint_file(path)
    agent = state.get("agent") if isinstance(state, dict) else None
    if not isinstance(agent, dict) or agent.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} is not a flowrl checkpoint (no format tag {CHECKPOINT_FORMAT!r}); "
            "give a last.pt or best.pt written by flowrl train"
        )
    verify_checksum(agent, path)
    return state


def read_checkpoint_file(path: Path) -> Any:
    """torch.load of tensors and plain values only; a one-line UserError for anything else."""
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"{path} is not a flowrl checkpoint: not a complete PyTorch file "
            "(truncated, damaged or another format)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged or foreign file
        if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
            raise UserError(
                f"{path} is not a flowrl checkpoint: it stores Python objects, not only tensors"
            ) from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(
            f"checkpoint {path} cannot be read (damaged?): {type(err).__name__}: {reason}"
        ) from None


def verify_checksum(agent: dict[str, Any], path: Path) -> None:
    """A UserError when the weights are not the ones saved (checkpoints before checksums pass)."""
    if "checksum" not in agent:
        return
    try:
        actual = tensors_checksum(agent_tensors(agent))
    except (KeyError, AttributeError, TypeError, RuntimeError) as err:
        raise UserError(f"checkpoint {path} is damaged: {type(err).__name__}: {err}") from None
    if actual != agent["checksum"]:
        raise UserError(
            f"checkpoint {path} is damaged: its weights do not match the checksum saved with them"
        )
