"""Training: configuration, the trainer and its logger."""

from flowrl.train.config import TrainConfig, load_config
from flowrl.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "load_config"]
