"""Training: configuration, the trainer, its logger, and `fit`, the Python entry point."""

from flowrl.train.config import TrainConfig
from flowrl.train.config_files import load_config
from flowrl.train.fit import fit
from flowrl.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "fit", "load_config"]
