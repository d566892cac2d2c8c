"""Making envs by id with keyword arguments, and reading those arguments from the command line."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import yaml
from gymnasium.envs.registration import load_env_creator

from flowrl.errors import UserError
from flowrl.yaml_values import KwargsLoader

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEXT_PAIR = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")  # a comma that starts key=


def parse_env_kwargs(items: Sequence[str], option: str = "--env-kwargs") -> dict[str, Any]:
    """`["length=500", "noise_dims=2,flag=true"]` -> {"length": 500, "noise_dims": 2, ...}.

    Pairs are repeatable or comma-separated; values are read as YAML scalars or lists the
    way settings are (`KwargsLoader`: 500 -> int, 010 -> 10, 0.5 -> float, true -> bool,
    [1, 2] -> list, anything else a string: `off` and `0x10` too).
    A key given twice is an error.
    """
    kwargs: dict[str, Any] = {}
    for item in items:
        for pair in _NEXT_PAIR.split(item):
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not _KEY.fullmatch(key):
                raise UserError(f"{option} {pair!r}: expected key=value, e.g. length=500")
            if key in kwargs:
                raise UserError(f"{option}: {key} is given twice ({key}={kwargs[key]!r}, {pair})")
            try:
                kwargs[key] = yaml.load(value, Loader=KwargsLoader) if value.strip() else ""
            except yaml.YAMLError as err:
                raise UserError(f"{option} {pair!r}: cannot read the value ({err})") from None
    return kwargs


def make_env(env_id: str, env_kwargs: dict[str, Any], **make_kwargs: Any) -> gym.Env:
    """`gym.make(env_id, **make_kwargs, **env_kwargs)`, with a UserError naming a bad id or
    keyword argument."""
    with env_errors(env_id, env_kwargs):
        return gym.make(env_id, **make_kwargs, **env_kwargs)


@contextmanager
def env_errors(env_id: str, env_kwargs: dict[str, Any]) -> Iterator[None]:
    """Checks `env_kwargs`' types against the env's defaults, then turns what making the env
    raises for a bad id, a missing package or a bad keyword into a one-line UserError."""
    check_env_kwarg_types(env_id, env_kwargs)
    try:
        yield
    except gym.error.Error as err:
        raise UserError(f"cannot make environment {env_id!r}: {err}") from None
    except ImportError as err:
        raise UserError(f"environment {env_id!r} needs a missing package: {err}") from None
    # a keyword the env does not take, or a bad value (envs check theirs with asserts too,
    # e.g. minigrid's max_steps=2.5)
    except (TypeError, ValueError, AssertionError) as err:
        raise UserError(f"cannot make environment {env_id!r} with {env_kwargs}: {err}") from None


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """`gym.spec(env_id)`, also for the `module:Env-v0` ids that `gym.make` takes (the module
    is imported first, to register its envs)."""
    module, sep, name = env_id.rpartition(":")
    if sep:
        importlib.import_module(module)
    return gym.spec(name if sep else env_id)


def env_defaults(env_id: str) -> dict[str, Any]:
    """The keyword defaults of `env_id`'s constructor and registration ({} if unknown)."""
    try:
        spec = env_spec(env_id)
        creator = spec.entry_point
        if isinstance(creator, str):
            creator = load_env_creator(creator)
        parameters = inspect.signature(creator).parameters.values()
    except (gym.error.Error, ImportError, AttributeError, TypeError, ValueError):
        return {}  # making the env reports these
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return {**defaults, **(spec.kwargs or {})}


def check_env_kwarg_types(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """A true/false where the env's default is a number, or a number where it is a bool, is
    an error (Python would take `length=True` as a length of 1)."""
    defaults = env_defaults(env_id)
    for key, value in env_kwargs.items():
        default = defaults.get(key)
        if not isinstance(default, bool | int | float) or isinstance(value, bool) == isinstance(
            default, bool
        ):
            continue
        expected = "true or false" if isinstance(default, bool) else "a number"
        raise UserError(
            f"env keyword {key}={value!r} for {env_id}: expected {expected}, like its "
            f"default {default!r}"
        )
