"""Making envs by id with keyword arguments, and reading those arguments from the command line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import yaml

from flowrl.errors import UserError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEXT_PAIR = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")  # a comma that starts key=


def parse_env_kwargs(items: Sequence[str], option: str = "--env-kwargs") -> dict[str, Any]:
    """`["length=500", "noise_dims=2,flag=true"]` -> {"length": 500, "noise_dims": 2, ...}.

    Pairs are repeatable or comma-separated; values are read as YAML scalars or lists
    (500 -> int, 0.5 -> float, true -> bool, [1, 2] -> list, anything else a string).
    """
    kwargs: dict[str, Any] = {}
    for item in items:
        for pair in _NEXT_PAIR.split(item):
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not _KEY.fullmatch(key):
                raise UserError(f"{option} {pair!r}: expected key=value, e.g. length=500")
            try:
                kwargs[key] = yaml.safe_load(value) if value.strip() else ""
            except yaml.YAMLError as err:
                raise UserError(f"{option} {pair!r}: cannot read the value ({err})") from None
    return kwargs


def make_env(env_id: str, env_kwargs: dict[str, Any], **make_kwargs: Any) -> gym.Env:
    """`gym.make(env_id, **make_kwargs, **env_kwargs)`, with a UserError naming a bad id or
    keyword argument."""
    try:
        return gym.make(env_id, **make_kwargs, **env_kwargs)
    except gym.error.Error as err:
        raise UserError(f"cannot make environment {env_id!r}: {err}") from None
    except ImportError as err:
        raise UserError(f"environment {env_id!r} needs a missing package: {err}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"cannot make environment {env_id!r} with {env_kwargs}: {err}") from None
