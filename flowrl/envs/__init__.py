"""Environments (T-Mazes, MiniGrid-Memory, observation-masked MuJoCo) and the built-in
collection policies that record datasets in them.

Importing flowrl registers the environments with Gymnasium (ids under `flowrl/`).
"""

from flowrl.envs.collection_policies import CollectionPolicy, PendulumSwingUp, RandomPolicy
from flowrl.envs.policy_registry import (
    COLLECTION_POLICIES,
    PolicyEntry,
    collection_policy,
    default_policy,
    make_collection_policy,
)
from flowrl.envs.registration import MINIGRID_MEMORY_ID, TMAZE_IDS, register_envs

register_envs()

__all__ = [
    "COLLECTION_POLICIES",
    "MINIGRID_MEMORY_ID",
    "TMAZE_IDS",
    "CollectionPolicy",
    "PendulumSwingUp",
    "PolicyEntry",
    "RandomPolicy",
    "collection_policy",
    "default_policy",
    "make_collection_policy",
    "register_envs",
]
