"""`fit`: train an agent on a dataset in hand, from Python.

agent = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=64))
summary = flowrl.fit(agent, dataset, steps=1000)

`flowrl.train.run(config)` is the other entry point: the run `flowrl train` makes, with the
dataset and agent built from the config's `data` and `model` sections.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import EpisodeDataset
from flowrl.data.masked import masked_as
from flowrl.data.stretch import stretched_as
from flowrl.errors import UserError
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
    run named after the dataset), `steps` and `eval_env` overriding its own.

    The data are `dataset` as given: nothing is loaded, collected or masked here (that is
    `flowrl.train.run(config)`). The run records `config`'s data settings, with the agent's
    return scale (and its model settings as `model`); a `data.observation_mask` the dataset
    does not have is refused (mask it with `flowrl.data.masked.mask_dataset` first), and so
    is a `data.stretch` it does not have (`flowrl.data.stretch.stretch_dataset`).

    Returns the final evaluation's summaries and the run folder (checkpoints, metrics).
    A new run into a used run folder needs `overwrite` (which empties it) or `resume`.
    Under torchrun, call it in every rank inside `flowrl.train.distributed.process_group`.
    """
    if config is None:
        config = TrainConfig(name=dataset.name.replace("/", "-"))
        config.data = replace(config.data, dataset=dataset.name)
    mask = config.data.observation_mask
    if not masked_as(dataset, mask):
        raise UserError(
            f"data.observation_mask={mask} but dataset {dataset.name!r} (env {dataset.env_id}) "
            "is not masked: flowrl.fit trains on the dataset as given; mask it first "
            "(flowrl.data.masked.mask_dataset), or train from the config with flowrl.train.run"
        )
    if not stretched_as(dataset, config.data.stretch):
        raise UserError(
            f"data.stretch={config.data.stretch} but dataset {dataset.name!r} is not stretched: "
            "flowrl.fit trains on the dataset as given; stretch it first "
            "(flowrl.data.stretch.stretch_dataset), or train from the config with flowrl.train.run"
        )
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
