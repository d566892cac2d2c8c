"""Observation-masked MuJoCo (Ni et al., ICML 2022): positions only (-P) or velocities only (-V).

Gymnasium's v5 locomotion envs observe `qpos[1:]` (the x position left out) followed by
`qvel`. `-P` keeps the `qpos` part (height and angles), `-V` the `qvel` part; either way the
state is no longer Markov, and with velocities only the posture must be integrated from the
history. The same mask applies to an env (`ObservationMask`, ids `flowrl/<Env>-P-v5`) and to
a dataset recorded in the full env (`flowrl.data.masked.mask_dataset`), so offline data
trains and evaluates under the same partial observability.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from flowrl.errors import UserError

MASKS = ("P", "V")

# env id -> (observation size, number of leading qpos entries)
MASKED_ENVS: dict[str, tuple[int, int]] = {
    "Hopper-v5": (11, 5),
    "Walker2d-v5": (17, 8),
    "HalfCheetah-v5": (17, 8),
}


def mask_dims(env_id: str, mask: str) -> np.ndarray:
    """Observation indices `mask` keeps in `env_id`."""
    if mask not in MASKS:
        raise UserError(f"observation mask {mask!r}: expected one of {', '.join(MASKS)}")
    if env_id not in MASKED_ENVS:
        raise UserError(
            f"no observation mask for {env_id!r}; masks exist for {', '.join(MASKED_ENVS)}"
        )
    obs_dim, positions = MASKED_ENVS[env_id]
    return np.arange(positions) if mask == "P" else np.arange(positions, obs_dim)


def masked_env_id(env_id: str, mask: str) -> str:
    """The registered id of `env_id` under `mask`: Hopper-v5, P -> flowrl/Hopper-P-v5."""
    mask_dims(env_id, mask)  # checks both
    name, version = env_id.rsplit("-v", 1)
    return f"flowrl/{name}-{mask}-v{version}"


class ObservationMask(gym.ObservationWrapper):
    """Keeps the observation entries `mask` names for the wrapped v5 locomotion env."""

    def __init__(self, env: gym.Env, mask: str, base_id: str | None = None) -> None:
        super().__init__(env)
        base_id = base_id or (env.spec.id if env.spec is not None else "")
        self.mask = mask
        self.dims = mask_dims(base_id, mask)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and space.shape == (MASKED_ENVS[base_id][0],)):
            raise UserError(
                f"{base_id} observes {space}; mask {mask} expects the default observation of "
                f"size {MASKED_ENVS[base_id][0]} (exclude_current_positions_from_observation)"
            )
        self.observation_space = gym.spaces.Box(
            space.low[self.dims], space.high[self.dims], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.dims]


def make_masked_env(base_id: str, mask: str, **kwargs: Any) -> gym.Env:
    """Entry point of the registered masked ids: `base_id` made with `kwargs`, then masked."""
    env = gym.make(base_id, **kwargs).unwrapped  # the masked id's registration adds TimeLimit
    return ObservationMask(env, mask, base_id)
