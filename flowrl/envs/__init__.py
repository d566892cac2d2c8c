"""Environments (T-Mazes, MiniGrid-Memory, observation-masked MuJoCo) and the built-in
collection policies that record datasets in them.

Importing flowrl registers the environments with Gymnasium (ids under `flowrl/`).
"""

from flowrl.envs.collection_policies import (
    POLICIES,
    CollectionPolicy,
    PendulumSwingUp,
    RandomPolicy,
    make_policy,
)
from flowrl.envs.registration import MINIGRID_MEMORY_ID, TMAZE_IDS, register_envs

register_envs()

__all__ = [
    "MINIGRID_MEMORY_ID",
    "POLICIES",
    "TMAZE_IDS",
    "CollectionPolicy",
    "PendulumSwingUp",
    "RandomPolicy",
    "make_policy",
    "register_envs",
]
