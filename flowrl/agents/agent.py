"""A Decision Transformer agent: the model, its data contract (the normaliser) and its
loss; acts (`policy`), saves and loads. Training and evaluation sit above it:

    agent = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=64))
    flowrl.fit(agent, dataset, steps=1000)
    results = flowrl.evaluate(agent, target_returns=[3600])
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowrl.agents.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_atomic, seal
from flowrl.agents.decision_transformer import (
    DecisionTransformer,
    DecisionTransformerConfig,
    action_loss,
    discrete_action_loss,
)
from flowrl.agents.normalizer import Normalizer, check_return_scale
from flowrl.agents.policy import DecisionTransformerPolicy
from flowrl.agents.state_encoder import grid_code_error, standardises_states
from flowrl.data import Batch, EpisodeDataset
from flowrl.data.reference import normalized_score
from flowrl.envs.record import EnvRecord
from flowrl.errors import UserError


def default_target(dataset: EpisodeDataset) -> float:
    """A high return the data still supports: its 90th percentile."""
    return float(np.percentile(dataset.returns, 90))


class DecisionTransformerAgent:
    """A Decision Transformer and everything it needs to train and act.

    `setup(dataset)` (done by `flowrl.fit`) fits the normaliser and builds the model for the
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
        check_return_scale(return_scale)
        self.config = config if config is not None else DecisionTransformerConfig()
        self._scale_to_fit = float(return_scale)  # the normaliser's, once `setup` fits it
        self._model: DecisionTransformer | None = None
        self.normalizer: Normalizer | None = None
        self.dataset: str | None = None  # the training data's name, env and references
        self.env: EnvRecord | None = None  # the env it acts in (e.g. a T-Maze of some length)
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
        agent._model, agent.normalizer = model, normalizer
        agent.dataset = dataset
        agent.env = EnvRecord(env_id, env_kwargs or {}) if env_id else None
        agent.ref_min_score, agent.ref_max_score = ref_min_score, ref_max_score
        agent.target_returns = [float(t) for t in target_returns]
        return agent

    # ---------------------------------------------------------------- data contract
    def setup(
        self,
        dataset: EpisodeDataset,
        *,
        env_id: str | None = None,
        target_returns: list[float] | tuple[float, ...] = (),
    ) -> None:
        """Fits the normaliser and builds the model, unless the agent has them already
        (then the dataset must have the agent's shapes). The agent records the env it acts
        in (default: the dataset's, with its recorded keyword arguments) and its target
        returns (default: its own, else the dataset's 90th percentile)."""
        discrete = dataset.discrete_actions is not None
        if self._model is not None:
            cfg = self._model.cfg
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
            self._record_targets(env_id, target_returns)
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
        if cfg.state_encoder == "grid":
            check_grid_codes(dataset)
        self._model = DecisionTransformer(cfg)
        self.normalizer = Normalizer.fit(
            dataset,
            self._scale_to_fit,
            standardize_states=standardises_states(cfg.state_encoder),
        )
        self.dataset, self.env = dataset.name, dataset.env
        self.ref_min_score, self.ref_max_score = dataset.ref_min_score, dataset.ref_max_score
        self.target_returns = self.target_returns or [default_target(dataset)]
        self._record_targets(env_id, target_returns)

    def _record_targets(self, env_id: str | None, target_returns: list[float] | tuple) -> None:
        """`env_id`, if given, is the env the agent acts in (`EnvRecord.acting_in`)."""
        if env_id is not None:
            self.env = EnvRecord(env_id) if self.env is None else self.env.acting_in(env_id)
        if target_returns:
            self.target_returns = [float(t) for t in target_returns]

    @property
    def return_scale(self) -> float:
        """Returns-to-go are divided by it. Its one holder is the normaliser (saved with the
        agent); an agent without one yet holds the scale its `setup` will fit one with."""
        return self._scale_to_fit if self.normalizer is None else self.normalizer.return_scale

    @property
    def env_id(self) -> str | None:
        return None if self.env is None else self.env.env_id

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the env it acts in (a copy)."""
        return {} if self.env is None else dict(self.env.kwargs)

    @property
    def model(self) -> DecisionTransformer:
        """The model; a RuntimeError before `setup` or `load` gave the agent one."""
        if self._model is None or self.normalizer is None:
            raise RuntimeError("the agent has no model yet: fit it on a dataset, or load one")
        return self._model

    def to(self, device: torch.device | str) -> DecisionTransformerAgent:
        """Moves the model and the normaliser to `device`."""
        self.model.to(device)
        self.normalizer = self.normalizer.to(device)
        return self

    def loss(self, batch: Batch[Tensor], model: nn.Module | None = None) -> Tensor:
        """The training loss of a raw batch (on the model's device): normalise, predict the
        actions, and average over real steps the squared error (continuous actions) or the
        cross-entropy of the data's action (discrete), plus `model.key_gate_penalty` times
        the mean key gate. `model` is the module to call in place of `self.model`, e.g. its
        DistributedDataParallel or compiled wrapper."""
        norm = self.normalizer
        actions = norm.actions(batch.actions)
        loss = discrete_action_loss if self.model.cfg.discrete else action_loss
        predicted = (model or self.model)(
            norm.states(batch.states),
            actions,
            norm.returns(batch.returns_to_go),
            batch.timesteps,
            cu_seqlens=getattr(batch, "cu_seqlens", None),
        )
        value = loss(predicted.float(), actions, batch.valid)
        penalty = self.model.cfg.key_gate_penalty
        return value + penalty * self.model.key_gate_mean().float() if penalty else value

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
            self.model,
            self.normalizer,
            num_envs=num_envs,
            max_steps=max_steps,
            recurrent=recurrent,
            device=device,
            sample=sample,
            seed=seed,
        )

    def normalized_score(self, returns: np.ndarray) -> np.ndarray | None:
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    # ---------------------------------------------------------------- saving
    def state_dict(self) -> dict[str, Any]:
        """The agent's part of a checkpoint: plain tensors, numbers and strings."""
        model = self.model
        return seal(
            {
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
        )

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], source: str = "checkpoint"
    ) -> DecisionTransformerAgent:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(
                f"{source} is not a flowrl agent checkpoint (format {CHECKPOINT_FORMAT})"
            )
        model = DecisionTransformer(model_config(state.get("model_config"), source))
        load_weights(model, state["model"], f"{source}: its weights do not fit its model_config")
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


def load_weights(model: torch.nn.Module, weights: dict[str, Any], refusal: str) -> None:
    """`model.load_state_dict(weights)`; a UserError `refusal: <the first mismatch>` for
    weights of other names or shapes."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[min(1, len(lines) - 1)]  # the first mismatch, after the heading
        raise UserError(f"{refusal}: {reason}") from None


def model_config(saved: object, source: str) -> DecisionTransformerConfig:
    """The model settings a checkpoint (`source`) stores, checked: a UserError naming the
    file for settings this flowrl does not know (a newer flowrl's) or a bad value."""
    if not isinstance(saved, dict):
        raise UserError(f"{source}: model_config is {type(saved).__name__}, not settings")
    unknown = sorted(set(saved) - {f.name for f in fields(DecisionTransformerConfig)})
    if unknown:
        raise UserError(
            f"{source}: model_config holds settings this flowrl does not know: "
            f"{', '.join(map(str, unknown))} (written by a newer flowrl?)"
        )
    try:
        return DecisionTransformerConfig(**saved)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None


def check_grid_codes(dataset: EpisodeDataset) -> None:
    """A UserError unless the grid state encoder can read the dataset's observations."""
    observations = np.concatenate([ep.observations for ep in dataset.episodes])
    error = grid_code_error(observations)
    if error is not None:
        raise UserError(f"model.state_encoder=grid: dataset {dataset.name!r}: {error}")


def action_kind(discrete: bool) -> str:
    return "discrete" if discrete else "continuous"


def load_agent(path: str | Path) -> DecisionTransformerAgent:
    """The agent stored in a training checkpoint or `save` file; needs nothing but the file."""
    return DecisionTransformerAgent.load(path)
