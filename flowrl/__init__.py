"""flowrl: offline RL with Decision Transformers on causal Flow-Attention.

from flowrl import DecisionTransformerAgent, DecisionTransformerConfig, load_dataset
"""

import flowrl.envs  # noqa: F401  registers flowrl's Gymnasium environments
from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig, load_agent
from flowrl.data import collect_dataset, load_dataset
from flowrl.train import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "DecisionTransformerAgent",
    "DecisionTransformerConfig",
    "TrainConfig",
    "collect_dataset",
    "load_agent",
    "load_dataset",
]
