"""MiniGrid-Memory (minigrid's `MemoryEnv`) with a flat observation vector and 3 actions.

The agent starts in a 3x3 room holding a green key or ball, walks east down a hallway
and must step next to the one of the two objects at its far end that matches the room's.
Reward `1 - 0.9 * steps / max_steps` for the match, 0 for the other one (both end the
episode); `max_steps` defaults to minigrid's 5 * size^2, after which the episode truncates.

Observation (float32, `OBS_DIM` = 151 numbers, integer-valued):

    obs[0:147]    the egocentric 7x7 view, minigrid's `image[i, j, c]` flattened in C order
                  (index (7 * i + j) * 3 + c): i the view's column left to right, j its row
                  from the farthest to the agent's (the agent is at i = 3, j = 6), and c the
                  cell's (object, colour, state) codes of minigrid's OBJECT_TO_IDX (0..10),
                  COLOR_TO_IDX (0..5) and STATE_TO_IDX (0..2); cells out of sight are 0, 0, 0.
    obs[147:151]  the agent's direction, one-hot: east, south, west, north.

Actions: Discrete(3), minigrid's first three: 0 turn left, 1 turn right, 2 forward. The
other four do nothing in this env: `pickup` is replaced by `toggle`, which keys and balls
ignore; `drop` needs a carried object, which no action can give; `done` is a no-op. A
policy with them only wastes steps, so no return is lost without them.

`minigrid` is an optional extra (`pip install -e ".[minigrid]"`): this module imports it
only when an env is made.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from flowrl.errors import UserError

VIEW = 7  # minigrid's agent_view_size
CELL_CODES = (11, 6, 3)  # how many object, colour and state codes minigrid has
DIRECTIONS = 4
GRID_DIM = VIEW * VIEW * len(CELL_CODES)
OBS_DIM = GRID_DIM + DIRECTIONS
N_ACTIONS = 3
LEFT, RIGHT, FORWARD = 0, 1, 2


def room_object_cell(size: int) -> tuple[int, int]:
    """Where MemoryEnv puts the room's object in a grid of `size`."""
    return 1, size // 2 - 1


def size_with_longer_hallway(size: int, factor: int) -> int:
    """The grid size whose way from the room's object to the end (size - 3 steps) is
    `factor` times that of `size`; odd, as sizes must be."""
    return (size - 3) * factor + 3


def import_minigrid() -> Any:
    """The `minigrid` package; a UserError naming the extra when it is not installed."""
    try:
        import minigrid
    except ImportError:
        raise UserError(
            'MiniGrid-Memory needs the minigrid package: pip install -e ".[minigrid]" '
            "(or pip install minigrid==3.2.0)"
        ) from None
    return minigrid


def observation_space() -> gym.spaces.Box:
    """Codes in [0, number of codes - 1] per grid entry, 0/1 for the direction."""
    high = np.concatenate(
        [np.tile(np.array(CELL_CODES) - 1, VIEW * VIEW), np.ones(DIRECTIONS)]
    ).astype(np.float32)
    return gym.spaces.Box(np.zeros(OBS_DIM, np.float32), high, dtype=np.float32)


def flat_observation(observation: dict[str, Any]) -> np.ndarray:
    """minigrid's {"image", "direction", ...} -> the flat vector of the module docstring."""
    flat = np.zeros(OBS_DIM, np.float32)
    flat[:GRID_DIM] = np.asarray(observation["image"]).reshape(-1)
    flat[GRID_DIM + int(observation["direction"])] = 1.0
    return flat


class MiniGridMemory(gym.ObservationWrapper):
    """`MemoryEnv(size, random_length)` with the flat observation and Discrete(3) actions.

    `size` (odd, >= 7) sets the map; without `random_length` the hallway ends at x = size - 3,
    with it the hallway end is drawn per episode (minigrid's rule). The agent starts facing
    east anywhere from the room's west wall to the hallway's end, so it may have to turn
    back to see the room's object.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int = 13,
        random_length: bool = False,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise UserError(f"MiniGrid-Memory size={size!r}: expected an odd integer >= 7")
        if size < 7 or size % 2 == 0:
            raise UserError(f"MiniGrid-Memory size={size}: expected an odd integer >= 7")
        if not isinstance(random_length, bool):
            raise UserError(f"MiniGrid-Memory random_length={random_length!r}: expected a bool")
        if max_steps is not None and (isinstance(max_steps, bool) or max_steps < 1):
            raise UserError(f"MiniGrid-Memory max_steps={max_steps!r}: expected an integer >= 1")
        import_minigrid()
        from minigrid.envs import MemoryEnv

        env = MemoryEnv(
            size=int(size),
            random_length=random_length,
            max_steps=max_steps,
            render_mode=render_mode,
        )
        super().__init__(env)
        self.observation_space = observation_space()
        self.action_space = gym.spaces.Discrete(N_ACTIONS)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return flat_observation(observation)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"MiniGrid-Memory actions are integers 0..2, got {action!r}")
        observation, reward, terminated, truncated, info = self.env.step(int(action))
        info = {**info, "success": bool(reward > 0)}
        return self.observation(observation), float(reward), terminated, truncated, info
