"""A Decision Transformer agent: the model, its data contract (the normaliser) and its
loss; trains on a dataset (`fit`), acts (`policy`), evaluates, saves and loads.

    agent = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=64))
    agent.fit(dataset, steps=1000)
    results = agent.evaluate(target_returns=[3600])
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from flowrl.agents.checksum import agent_tensors, tensors_checksum
from flowrl.agents.decision_transformer import (
    DecisionTransformer,
    DecisionTransformerConfig,
    action_loss,
    discrete_action_loss,
)
from flowrl.agents.normalizer import Normalizer
from flowrl.agents.policy import DecisionTransformerPolicy
from flowrl.data import Batch, EpisodeDataset
from flowrl.data.reference import normalized_score
from flowrl.errors import UserError

if TYPE_CHECKING:
    from flowrl.eval import TargetResult
    from flowrl.train.config import TrainConfig

CHECKPOINT_FORMAT = "flowrl-decision-transformer-2"


def default_target(dataset: EpisodeDataset) -> float:
    """A high return the data still supports: its 90th percentile."""
    return float(np.percentile(dataset.returns, 90))


class DecisionTransformerAgent:
    """A Decision Transformer and everything it needs to train and act.

    `setup(dataset)` (done by `fit`) fits the normaliser and builds the model for the
    dataset's shapes; a loaded agent has both already. `return_scale` divides
    returns-to-go (about the scale of an episode's reward, e.g. 1000 for MuJoCo).

    What depends on the kind of action space lives in three places: the normaliser's
    `actions` / `env_actions`, the model's action embedding and `action_head`, and `loss`.
    A Discrete(n) dataset gives a discrete agent (`model.cfg.discrete`): one-hot action
    tokens, logits over the n actions trained with cross-entropy, integer actions for the
    env (the most likely one, or sampled: `policy(sample=True)`).
    """

    def __init__(
        self, config: DecisionTransformerConfig | None = None, *, return_scale: float = 100.0
    ) -> None:
        if not return_scale > 0:
            raise UserError(f"return_scale={return_scale}: expected a positive number")
        self.config = config if config is not None else DecisionTransformerConfig()
        self.return_scale = float(return_scale)
        self.model: DecisionTransformer | None = None
        self.normalizer: Normalizer | None = None
        self.dataset: str | None = None  # the training data's name, env and references
        self.env_id: str | None = None
        self.env_kwargs: dict[str, Any] = {}  # the env's keyword arguments (e.g. a T-Maze length)
        self.ref_min_score: float | None = None
        self.ref_max_score: float | None = None
        self.target_returns: list[float] = []

    @classmethod
    def from_parts(
        cls,
        model: DecisionTransformer,
        normalizer: Normalizer,
        *,
        dataset: str | None = None,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
        target_returns: list[float] | tuple[float, ...] = (),
    ) -> DecisionTransformerAgent:
        """An agent around a built model and its normaliser, with the training data's
        name, env id and reference returns."""
        if model.cfg.discrete != normalizer.discrete:
            raise ValueError(
                f"a model with discrete={model.cfg.discrete} needs a normaliser that agrees"
            )
        agent = cls(model.cfg, return_scale=normalizer.return_scale)
        agent.model, agent.normalizer = model, normalizer
        agent.dataset, agent.env_id = dataset, env_id
        agent.env_kwargs = dict(env_kwargs or {})
        agent.ref_min_score, agent.ref_max_score = ref_min_score, ref_max_score
        agent.target_returns = [float(t) for t in target_returns]
        return agent

    # ---------------------------------------------------------------- data contract
    def setup(self, dataset: EpisodeDataset) -> None:
        """Fits the normaliser and builds the model, unless the agent has them already
        (then the dataset must have the agent's shapes)."""
        discrete = dataset.discrete_actions is not None
        if self.model is not None:
            cfg = self.model.cfg
            if (cfg.state_dim, cfg.act_dim) != (dataset.obs_dim, dataset.act_dim):
                raise UserError(
                    f"dataset {dataset.name!r} has (obs_dim, act_dim) = "
                    f"({dataset.obs_dim}, {dataset.act_dim}); the agent was built for "
                    f"({cfg.state_dim}, {cfg.act_dim})"
                )
            if cfg.discrete != discrete:
                raise UserError(
                    f"dataset {dataset.name!r} has {action_kind(discrete)} actions; the agent "
                    f"was built for {action_kind(cfg.discrete)} ones"
                )
            return
        for key, have in (("state_dim", dataset.obs_dim), ("act_dim", dataset.act_dim)):
            want = getattr(self.config, key)
            if want is not None and want != have:
                raise UserError(f"model.{key}={want} but dataset {dataset.name!r} has {have}")
        if self.config.discrete and not discrete:
            raise UserError(
                f"model.discrete=true but dataset {dataset.name!r} has continuous actions"
            )
        cfg = replace(
            self.config, state_dim=dataset.obs_dim, act_dim=dataset.act_dim, discrete=discrete
        )
        self.model = DecisionTransformer(cfg)
        self.normalizer = Normalizer.fit(dataset, self.return_scale)
        self.dataset, self.env_id = dataset.name, dataset.env_id
        self.env_kwargs = dict(dataset.env_kwargs)
        self.ref_min_score, self.ref_max_score = dataset.ref_min_score, dataset.ref_max_score
        self.target_returns = self.target_returns or [default_target(dataset)]

    def _built(self) -> DecisionTransformer:
        if self.model is None or self.normalizer is None:
            raise RuntimeError("the agent has no model yet: fit it on a dataset, or load one")
        return self.model

    def to(self, device: torch.device | str) -> DecisionTransformerAgent:
        """Moves the model and the normaliser to `device`."""
        self._built().to(device)
        self.normalizer = self.normalizer.to(device)
        return self

    def loss(self, batch: Batch[Tensor], model: nn.Module | None = None) -> Tensor:
        """The training loss of a raw batch (on the model's device): normalise, predict the
        actions, and average over real steps the squared error (continuous actions) or the
        cross-entropy of the data's action (discrete). `model` is the module to call in place
        of `self.model`, e.g. its DistributedDataParallel or compiled wrapper."""
        norm = self.normalizer
        actions = norm.actions(batch.actions)
        loss = discrete_action_loss if self._built().cfg.discrete else action_loss
        predicted = (model or self.model)(
            norm.states(batch.states),
            actions,
            norm.returns(batch.returns_to_go),
            batch.timesteps,
            cu_seqlens=getattr(batch, "cu_seqlens", None),
        )
        return loss(predicted.float(), actions, batch.mask)

    # ---------------------------------------------------------------- training
    def fit(
        self,
        dataset: EpisodeDataset,
        *,
        steps: int | None = None,
        eval_env: str | None = None,
        config: TrainConfig | None = None,
        resume: bool = False,
        overwrite: bool = False,
        allow_dataset_change: bool = False,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Trains on `dataset` with `config`'s loop settings (default: TrainConfig's, the
        run named after the dataset), `steps` and `eval_env` overriding its own.

        Returns the final evaluation's summaries and the run folder (checkpoints, metrics).
        A new run into a used run folder needs `overwrite` (which empties it) or `resume`.
        Under torchrun, call it in every rank inside `flowrl.train.distributed.process_group`.
        """
        from flowrl.train.config import TrainConfig, validate
        from flowrl.train.trainer import Trainer

        if config is None:
            config = TrainConfig(name=dataset.name.replace("/", "-"))
            config.data = replace(config.data, dataset=dataset.name)
        config = replace(
            config,
            model=self.config,
            data=replace(config.data, return_scale=self.return_scale),
        )
        if steps is not None:
            config.steps = steps
        if eval_env is not None:
            config.eval = replace(config.eval, env_id=eval_env)
        validate(config)
        trainer = Trainer(
            config,
            self,
            dataset,
            resume=resume,
            overwrite=overwrite,
            allow_dataset_change=allow_dataset_change,
            progress=progress,
        )
        return trainer.fit()

    # ---------------------------------------------------------------- acting
    def policy(
        self,
        num_envs: int,
        max_steps: int,
        *,
        recurrent: bool | None = None,
        device: torch.device | str = "cpu",
        sample: bool = False,
        seed: int = 0,
    ) -> DecisionTransformerPolicy:
        """A policy for `num_envs` envs at once, episodes up to `max_steps` steps. A discrete
        agent takes its most likely action, or with `sample` draws one from its distribution
        (each env's draws seeded by `seed`, or per episode by `reset`'s seeds)."""
        return DecisionTransformerPolicy(
            self._built(),
            self.normalizer,
            num_envs=num_envs,
            max_steps=max_steps,
            recurrent=recurrent,
            device=device,
            sample=sample,
            seed=seed,
        )

    def evaluate(
        self,
        env_id: str | None = None,
        *,
        target_returns: list[float] | None = None,
        episodes: int = 10,
        num_envs: int = 10,
        seed: int = 0,
        max_steps: int = 1000,
        env_kwargs: dict[str, Any] | None = None,
        recurrent: bool | None = None,
        sample_actions: bool = False,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> list[TargetResult]:
        """`episodes` episodes per target return (default: the agent's) in `env_id`
        (default: the dataset's env, made with its recorded keyword arguments updated by
        `env_kwargs`), on the model's device unless `device` is given. A discrete agent
        acts greedily, or with `sample_actions` samples its actions (seeded per episode)."""
        from flowrl.eval import evaluate

        return evaluate(
            self,
            target_returns=list(target_returns or self.target_returns),
            episodes=episodes,
            num_envs=num_envs,
            seed=seed,
            max_steps=max_steps,
            env_id=env_id,
            env_kwargs=env_kwargs,
            recurrent=recurrent,
            sample_actions=sample_actions,
            device=device or next(self._built().parameters()).device,
            progress=progress,
        )

    def normalized_score(self, returns: np.ndarray) -> np.ndarray | None:
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    # ---------------------------------------------------------------- saving
    def state_dict(self) -> dict[str, Any]:
        """The agent's part of a checkpoint: plain tensors, numbers and strings."""
        model = self._built()
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_config": asdict(model.cfg),
            "model": model.state_dict(),
            "normalizer": self.normalizer.state_dict(),
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
    def from_state_dict(
        cls, state: dict[str, Any], source: str = "checkpoint"
    ) -> DecisionTransformerAgent:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(
                f"{source} is not a flowrl agent checkpoint (format {CHECKPOINT_FORMAT})"
            )
        try:
            config = DecisionTransformerConfig(**state["model_config"])
        except UserError as err:
            raise UserError(f"{source}: {err}") from None
        model = DecisionTransformer(config)
        model.load_state_dict(state["model"])
        return cls.from_parts(
            model.eval(),
            Normalizer.from_state_dict(state["normalizer"]),
            dataset=state["dataset"],
            env_id=state["env_id"],
            env_kwargs=dict(state.get("env_kwargs", {})),  # older checkpoints have none
            ref_min_score=state["ref_min_score"],
            ref_max_score=state["ref_max_score"],
            target_returns=state["target_returns"],
        )

    def save(self, path: str | Path) -> Path:
        """Writes the agent to `path` atomically; `load` reads it back."""
        path = Path(path)
        save_atomic({"agent": self.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DecisionTransformerAgent:
        """The agent in a file written by `save` or a training checkpoint."""
        return cls.from_state_dict(load_checkpoint(path)["agent"], source=str(path))


def action_kind(discrete: bool) -> str:
    return "discrete" if discrete else "continuous"


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


def load_agent(path: str | Path) -> DecisionTransformerAgent:
    """The agent stored in a training checkpoint or `save` file; needs nothing but the file."""
    return DecisionTransformerAgent.load(path)
