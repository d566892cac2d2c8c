"""The one check that an env's spaces fit the sizes the data or an agent hold."""

from __future__ import annotations

import gymnasium as gym

from flowrl.errors import UserError


def check_spaces(
    where: str,
    side: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    obs_dim: int,
    act_dim: int,
    discrete: bool,
    fix: str,
) -> None:
    """A UserError beginning with `where` unless the env observes flat Box vectors of
    `obs_dim` and acts in Discrete(`act_dim`) from 0 (`discrete`) or in a flat Box of
    `act_dim`; `side` ("data", "agent") names what holds those sizes, and `fix` ends a
    size mismatch's message with what to do."""
    _check_flat_box(where, side, "observations", observation_space, obs_dim, fix)
    if not discrete:
        _check_flat_box(where, side, "actions", action_space, act_dim, fix)
    elif not (
        isinstance(action_space, gym.spaces.Discrete)
        and action_space.n == act_dim
        and action_space.start == 0
    ):
        raise UserError(
            f"{where} do not match: Discrete({act_dim}) actions in the {side}, "
            f"{action_space} in the env"
        )


def _check_flat_box(
    where: str, side: str, what: str, space: gym.Space, size: int, fix: str
) -> None:
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise UserError(f"{where}: the env's {what} are {space}, flowrl needs a flat Box")
    if space.shape[0] != size:
        raise UserError(
            f"{where} do not match: {what} of size {size} in the {side}, "
            f"{space.shape[0]} in the env ({fix})"
        )
