"""Environments and the built-in policies that collect datasets in them."""

from flowrl.envs.policies import POLICIES, PendulumSwingUp, Policy, RandomPolicy, make_policy

__all__ = ["POLICIES", "PendulumSwingUp", "Policy", "RandomPolicy", "make_policy"]
