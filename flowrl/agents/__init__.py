"""Agents: the Decision Transformer, its normaliser, its policy for acting, and checkpoints."""

from flowrl.agents.agent import DecisionTransformerAgent, load_agent
from flowrl.agents.decision_transformer import (
    DecisionTransformer,
    DecisionTransformerConfig,
    action_loss,
)
from flowrl.agents.normalizer import Normalizer
from flowrl.agents.policy import DecisionTransformerPolicy

__all__ = [
    "DecisionTransformer",
    "DecisionTransformerAgent",
    "DecisionTransformerConfig",
    "DecisionTransformerPolicy",
    "Normalizer",
    "action_loss",
    "load_agent",
]
