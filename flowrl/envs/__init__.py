"""Environments (T-Mazes, observation-masked MuJoCo) and the policies that collect data in them.

Importing flowrl registers the environments with Gymnasium (ids under `flowrl/`).
"""

from flowrl.envs.policies import POLICIES, PendulumSwingUp, Policy, RandomPolicy, make_policy
from flowrl.envs.registration import TMAZE_IDS, register_envs

register_envs()

__all__ = [
    "POLICIES",
    "TMAZE_IDS",
    "PendulumSwingUp",
    "Policy",
    "RandomPolicy",
    "make_policy",
    "register_envs",
]
