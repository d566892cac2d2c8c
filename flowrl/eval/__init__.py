"""Evaluation: rollouts in Gymnasium environments, normalised scores and videos."""

from flowrl.eval.rollout import TargetResult, evaluate
from flowrl.eval.video import VideoUnavailable, record_videos

__all__ = ["TargetResult", "VideoUnavailable", "evaluate", "record_videos"]
