"""Training: configuration, the trainer, its logger; `run` (a run from its config) and `fit`
(an agent on a dataset in hand), the Python entry points."""

from flowrl.train.config import TrainConfig
from flowrl.train.config_files import load_config
from flowrl.train.fit import fit
from flowrl.train.from_config import RunOutcome, run
from flowrl.train.trainer import Trainer

__all__ = ["RunOutcome", "TrainConfig", "Trainer", "fit", "load_config", "run"]
