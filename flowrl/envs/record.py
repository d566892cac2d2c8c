"""An environment as flowrl records it: its Gymnasium id and the keyword arguments it is made
with. A dataset names the env its episodes came from, an agent the env it acts in, and the
preflight and the rollouts make the env a record names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import gymnasium as gym

from flowrl.envs.make import make_env
from flowrl.errors import UserError


@dataclass(frozen=True)
class EnvRecord:
    """`env_id` made with `kwargs` (e.g. a T-Maze's `length`); immutable."""

    env_id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def __reduce__(self) -> tuple:  # pickle and copy: the proxy itself does not pickle
        return EnvRecord, (self.env_id, dict(self.kwargs))

    def acting_in(self, env_id: str | None, updates: Mapping[str, Any] | None = None) -> EnvRecord:
        """The env to act in: `env_id` (None: this one), with this record's kwargs when it is
        this env (recorded kwargs apply to the recorded env only; another env starts from its
        own defaults), updated by `updates`."""
        env_id = env_id or self.env_id
        recorded = self.kwargs if env_id == self.env_id else {}
        return EnvRecord(env_id, {**recorded, **(updates or {})})

    def make(self, **make_kwargs: Any) -> gym.Env:
        """`gym.make` of this env, with a UserError naming a bad id or keyword argument."""
        return make_env(self.env_id, dict(self.kwargs), **make_kwargs)

    def try_out(self) -> gym.Env:
        """Makes the env and takes one reset and one random step, so that settings that fail
        only once the env runs fail here, in one line, before any rollout; returns the env
        (closed)."""
        with self.make() as env:
            try:
                env.reset(seed=0)
                env.action_space.seed(0)
                env.step(env.action_space.sample())
            except (TypeError, ValueError, AssertionError) as err:
                raise UserError(
                    f"environment {self.env_id!r} with {dict(self.kwargs)} fails in its first "
                    f"reset or step: {err}"
                ) from None
        return env


def resolve_env(
    recorded: EnvRecord | None,
    env_id: str | None,
    updates: Mapping[str, Any] | None,
    *,
    missing: str,
) -> EnvRecord:
    """The env to act in: `env_id` if given, else the recorded one (`EnvRecord.acting_in`);
    a UserError saying `missing` when neither names one."""
    if recorded is not None:
        return recorded.acting_in(env_id, updates)
    if not env_id:
        raise UserError(missing)
    return EnvRecord(env_id, updates or {})
