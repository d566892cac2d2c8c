"""`run`: a training run built from its config alone, what `flowrl train` and sweeps run.

cfg = load_config("configs/quickstart.yaml", ["steps=1000"])
outcome = flowrl.train.run(cfg)

The config's `data` section says where the data comes from: the dataset is loaded (the
built-in demo set collected when it is not there), masked as `data.observation_mask` says
and stretched as `data.stretch` says, and an agent is built for it with the `model` section
and `data.return_scale`; then `fit` trains it (or resumes it from the run folder's
`last.pt`), after the run's one preflight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import EpisodeDataset, load_or_collect
from flowrl.data.masked import mask_dataset
from flowrl.data.stretch import stretch_dataset
from flowrl.train import distributed
from flowrl.train.config import TrainConfig
from flowrl.train.fit import fit
from flowrl.train.preflight import resolve_device
from flowrl.train.progress import finished_at


@dataclass
class RunOutcome:
    """What a run did: its folder, the dataset it trained on, the final evaluation's
    summaries and the best evaluation score. `finished_before`: the step a run asked to
    resume had already finished at; then nothing ran (no dataset, no results)."""

    run_dir: Path
    dataset: EpisodeDataset | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -float("inf")
    finished_before: int | None = None


def load_run_dataset(cfg: TrainConfig, *, progress: bool = True) -> EpisodeDataset:
    """The dataset `cfg.data` names, masked and stretched as it says. Under torchrun rank 0
    loads first (a download or a collection happens once)."""
    with distributed.main_first():
        dataset = load_or_collect(
            cfg.data.dataset,
            download=cfg.data.download,
            progress=progress and distributed.is_main(),
        )
    return prepare_dataset(dataset, cfg)


def prepare_dataset(dataset: EpisodeDataset, cfg: TrainConfig) -> EpisodeDataset:
    """The loaded `dataset` as `cfg.data` trains on it: masked, then stretched."""
    if cfg.data.observation_mask != "none":
        dataset = mask_dataset(dataset, cfg.data.observation_mask)
    return stretch_dataset(dataset, cfg.data.stretch)


def run(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    allow_dataset_change: bool = False,
    progress: bool = True,
) -> RunOutcome | None:
    """Trains the run `cfg` describes in `cfg.out_dir/cfg.name`: loads (or collects) and
    masks its dataset, builds the agent, and fits it; `resume` continues the folder's
    `last.pt` (a run that finished already is left as it is). Under torchrun every rank
    calls it (DistributedDataParallel); rank 0 gets the outcome, the others None."""
    run_dir = Path(cfg.out_dir) / cfg.name
    if resume and not overwrite:  # both: the trainer refuses them
        step = finished_at(run_dir, cfg)
        if step is not None:
            return RunOutcome(run_dir, finished_before=step)
    with distributed.process_group(resolve_device(cfg.device)):  # under torchrun: DDP
        dataset = load_run_dataset(cfg, progress=progress)
        agent = DecisionTransformerAgent(cfg.model, return_scale=cfg.data.return_scale)
        summary = fit(
            agent,
            dataset,
            config=cfg,
            resume=resume,
            overwrite=overwrite,
            allow_dataset_change=allow_dataset_change,
            progress=progress,
        )
        if not distributed.is_main():
            return None
    return RunOutcome(Path(summary["run_dir"]), dataset, summary["results"], summary["best_score"])
