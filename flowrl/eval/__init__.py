"""Evaluation: rollouts in Gymnasium environments and normalised scores."""

from flowrl.eval.rollout import TargetResult, evaluate

__all__ = ["TargetResult", "evaluate"]
