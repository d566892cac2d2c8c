"""A trained agent: the model plus everything needed to act, in one checkpoint."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowrl.agents.checksum import agent_tensors, tensors_checksum
from flowrl.agents.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from flowrl.agents.policy import DecisionTransformerPolicy
from flowrl.errors import UserError

CHECKPOINT_FORMAT = "flowrl-decision-transformer-1"


@dataclass
class Agent:
    model: DecisionTransformer
    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_scale: np.ndarray  # the model acts in [-1, 1]; the env gets actions times this
    return_scale: float
    dataset: str
    env_id: str | None
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the dataset's, for evaluation
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    target_returns: list[float] = field(default_factory=list)

    def policy(
        self,
        num_envs: int,
        max_steps: int,
        *,
        recurrent: bool | None = None,
        device: torch.device | str = "cpu",
    ) -> DecisionTransformerPolicy:
        return DecisionTransformerPolicy(
            self.model,
            obs_mean=self.obs_mean,
            obs_std=self.obs_std,
            action_scale=self.action_scale,
            return_scale=self.return_scale,
            num_envs=num_envs,
            max_steps=max_steps,
            recurrent=recurrent,
            device=device,
        )

    def normalized_score(self, returns: np.ndarray) -> np.ndarray | None:
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        span = self.ref_max_score - self.ref_min_score
        return 100.0 * (np.asarray(returns, dtype=np.float64) - self.ref_min_score) / span

    def state_dict(self) -> dict[str, Any]:
        """The agent's part of a checkpoint: plain tensors, numbers and strings."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_config": asdict(self.model.cfg),
            "model": self.model.state_dict(),
            "obs_mean": torch.as_tensor(self.obs_mean),
            "obs_std": torch.as_tensor(self.obs_std),
            "action_scale": torch.as_tensor(self.action_scale),
            "return_scale": float(self.return_scale),
            "dataset": self.dataset,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "target_returns": [float(t) for t in self.target_returns],
        }
        state["checksum"] = tensors_checksum(agent_tensors(state))  # verified on load
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], source: str = "checkpoint") -> Agent:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(
                f"{source} is not a flowrl agent checkpoint (format {CHECKPOINT_FORMAT})"
            )
        model = DecisionTransformer(DecisionTransformerConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
        return cls(
            model=model.eval(),
            obs_mean=state["obs_mean"].numpy(),
            obs_std=state["obs_std"].numpy(),
            action_scale=state["action_scale"].numpy(),
            return_scale=state["return_scale"],
            dataset=state["dataset"],
            env_id=state["env_id"],
            env_kwargs=dict(state.get("env_kwargs", {})),  # older checkpoints have none
            ref_min_score=state["ref_min_score"],
            ref_max_score=state["ref_max_score"],
            target_returns=list(state["target_returns"]),
        )


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: never half-written.

    The bytes are built in memory and written with plain file I/O (then fsync'd), so a
    failed write (e.g. a full disk) is an OSError, and the previous file at `path` stays.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as err:
        kept = "; the previous one is kept" if path.is_file() else ""
        raise UserError(f"cannot write checkpoint {path}: {err.strerror or err}{kept}") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's contents; a UserError unless it is an intact flowrl checkpoint."""
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


def load_agent(path: str | Path) -> Agent:
    """The agent stored in a training checkpoint; needs nothing but the file."""
    return Agent.from_state_dict(load_checkpoint(path)["agent"], source=str(path))
