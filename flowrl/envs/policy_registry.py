"""The one registry of built-in collection policies: each policy's name, how it is made,
its default noise, the envs it is for, and whether it is their default."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from flowrl.envs.collection_policies import CollectionPolicy, PendulumSwingUp, RandomPolicy
from flowrl.envs.minigrid_policies import MiniGridNoisy, MiniGridOracle
from flowrl.envs.registration import MINIGRID_MEMORY_ID, TMAZE_IDS
from flowrl.envs.tmaze_policies import TMazeNoisy, TMazeOracle
from flowrl.errors import UserError, renamed


@dataclass(frozen=True)
class PolicyEntry:
    """A built-in collection policy."""

    name: str
    make: Callable[[gym.Env, float], CollectionPolicy]  # (env, noise) -> the policy
    default_noise: float  # recorded in the dataset's metadata when no noise is given
    envs: tuple[str, ...] | None  # the env ids it is for; None: any env it can act in
    default: bool = False  # the policy `flowrl collect` takes on its envs when none is given
    noise_help: str | None = None  # what `noise` does; None: the policy has none

    def check_env(self, env: gym.Env) -> None:
        """A UserError unless the policy is for `env`."""
        env_id = env.spec.id if env.spec is not None else None
        if self.envs is not None and env_id not in self.envs:
            raise UserError(f"policy {self.name!r} is for {' or '.join(self.envs)}, not {env_id}")


COLLECTION_POLICIES = {
    entry.name: entry
    for entry in (
        PolicyEntry(
            "random",
            lambda env, noise: RandomPolicy(env.action_space),
            default_noise=1.0,  # every action random
            envs=None,
            default=True,
        ),
        PolicyEntry(
            "pendulum-swingup",
            lambda env, noise: PendulumSwingUp(noise),
            default_noise=1.0,
            envs=("Pendulum-v1",),
            default=True,
            noise_help="each episode takes random torques with a probability drawn from [0, noise]",
        ),
        PolicyEntry(
            "tmaze-oracle", lambda env, noise: TMazeOracle(), default_noise=0.0, envs=(*TMAZE_IDS,)
        ),
        PolicyEntry(
            "tmaze-noisy",
            lambda env, noise: TMazeNoisy(wrong_turn=noise / 2, noisy=noise / 2),
            default_noise=0.6,
            envs=(*TMAZE_IDS,),
            default=True,
            noise_help="a share noise/2 of the episodes takes the wrong turn and, "
            "independently, noise/2 takes random steps",
        ),
        PolicyEntry(
            "minigrid-oracle",
            lambda env, noise: MiniGridOracle(env),
            default_noise=0.0,
            envs=(MINIGRID_MEMORY_ID,),
        ),
        PolicyEntry(
            "minigrid-noisy",
            lambda env, noise: MiniGridNoisy(env, wrong_pick=noise / 2, noisy=noise / 2),
            default_noise=0.6,
            envs=(MINIGRID_MEMORY_ID,),
            default=True,
            noise_help="the same with the wrong object for the wrong turn",
        ),
        PolicyEntry(
            "minigrid-up-close-noisy",
            lambda env, noise: MiniGridNoisy(
                env, wrong_pick=noise / 2, noisy=noise / 2, look="up-close"
            ),
            default_noise=0.6,
            envs=(MINIGRID_MEMORY_ID,),
            noise_help="minigrid-noisy's, the room's object looked at from next to it",
        ),
    )
}


# old name -> new name: the old names still work, with a RenamedWarning
RENAMED_POLICIES = {
    "tmaze-mixed": "tmaze-noisy",
    "minigrid-mixed": "minigrid-noisy",
    "minigrid-up-close-mixed": "minigrid-up-close-noisy",
}


def collection_policy(name: str) -> PolicyEntry:
    """The registry's entry for `name` (or its old name); a UserError listing the policies
    for another name."""
    name = renamed(name, RENAMED_POLICIES, "policy")
    if name not in COLLECTION_POLICIES:
        raise UserError(f"unknown policy {name!r}; choose one of {', '.join(COLLECTION_POLICIES)}")
    return COLLECTION_POLICIES[name]


def default_policy(env_id: str) -> str:
    """The policy collected in `env_id` when none is given: the default one for that env,
    else the default for any env."""
    defaults = [entry for entry in COLLECTION_POLICIES.values() if entry.default]
    for entry in defaults:
        if entry.envs is not None and env_id in entry.envs:
            return entry.name
    return next(entry.name for entry in defaults if entry.envs is None)


def make_collection_policy(
    name: str, env: gym.Env, *, noise: float | None = None
) -> CollectionPolicy:
    """Built-in policy `name` for `env`, with `noise` (None: the policy's default)."""
    entry = collection_policy(name)
    entry.check_env(env)
    noise = entry.default_noise if noise is None else noise
    if not 0.0 <= noise <= 1.0:
        raise UserError(f"{name}: noise must be in [0, 1], got {noise}")
    return entry.make(env, noise)
