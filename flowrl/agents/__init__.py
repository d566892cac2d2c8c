"""Agents: the Decision Transformer, its policy for acting, and checkpoints."""

from flowrl.agents.agent import Agent, load_agent
from flowrl.agents.decision_transformer import (
    DecisionTransformer,
    DecisionTransformerConfig,
    action_loss,
)
from flowrl.agents.policy import DecisionTransformerPolicy

__all__ = [
    "Agent",
    "DecisionTransformer",
    "DecisionTransformerConfig",
    "DecisionTransformerPolicy",
    "action_loss",
    "load_agent",
]
