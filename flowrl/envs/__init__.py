"""Environments and the built-in collection policies that record datasets in them."""

from flowrl.envs.collection_policies import (
    POLICIES,
    CollectionPolicy,
    PendulumSwingUp,
    RandomPolicy,
    make_policy,
)

__all__ = ["POLICIES", "CollectionPolicy", "PendulumSwingUp", "RandomPolicy", "make_policy"]
