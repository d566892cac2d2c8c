"""`fit`: train an agent from Python, the library's counterpart of `flowrl train`.

agent = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=64))
summary = flowrl.fit(agent, dataset, steps=1000)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import EpisodeDataset
from flowrl.train.config import TrainConfig
from flowrl.train.trainer import Trainer


def fit(
    agent: DecisionTransformerAgent,
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
    """Trains `agent` on `dataset` with `config`'s loop settings (default: TrainConfig's, the
    run named after the dataset), `steps` and `eval_env` overriding its own. The run records
    the agent's model settings and return scale as its `model` and `data.return_scale`.

    Returns the final evaluation's summaries and the run folder (checkpoints, metrics).
    A new run into a used run folder needs `overwrite` (which empties it) or `resume`.
    Under torchrun, call it in every rank inside `flowrl.train.distributed.process_group`.
    """
    if config is None:
        config = TrainConfig(name=dataset.name.replace("/", "-"))
        config.data = replace(config.data, dataset=dataset.name)
    config = replace(
        config,
        model=agent.config,
        data=replace(config.data, return_scale=agent.return_scale),
        steps=config.steps if steps is None else steps,
        eval=config.eval if eval_env is None else replace(config.eval, env_id=eval_env),
    )
    trainer = Trainer(
        config,
        agent,
        dataset,
        resume=resume,
        overwrite=overwrite,
        allow_dataset_change=allow_dataset_change,
        progress=progress,
    )
    return trainer.fit()
