"""flowrl: offline RL with Decision Transformers on causal Flow-Attention.

import flowrl
dataset = flowrl.collect_dataset("Pendulum-v1", episodes=50)
agent = flowrl.DecisionTransformerAgent(flowrl.DecisionTransformerConfig(embed_dim=64))
flowrl.fit(agent, dataset, steps=1000)
results = flowrl.evaluate(agent, episodes=10)
"""

import flowrl.envs  # noqa: F401  registers flowrl's Gymnasium environments
from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig, load_agent
from flowrl.data import collect_dataset, load_dataset
from flowrl.eval import evaluate
from flowrl.train import TrainConfig, fit

__version__ = "0.1.0"

__all__ = [
    "DecisionTransformerAgent",
    "DecisionTransformerConfig",
    "TrainConfig",
    "collect_dataset",
    "evaluate",
    "fit",
    "load_agent",
    "load_dataset",
]
