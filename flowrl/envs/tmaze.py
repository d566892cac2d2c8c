"""Passive and Active T-Maze (Ni et al., NeurIPS 2023): a cue at the start, a turn at the end.

The grid is a corridor at y = 0 from x = 0 to the junction x = o + L, with a goal cell above
and below the junction; the cued side, drawn at reset, is the right one. The agent sees

    [0, cue]  at x = 0 on the first visit only (cue = +1 up, -1 down),
    [1, y]    at the junction and on the goal cells,
    [0, 0]    everywhere else,

so remembering the cue for L steps is the whole task. Actions: 0 right, 1 up, 2 left, 3 down;
a move off the grid leaves the agent where it is. Episodes last exactly T steps (L + 1 passive,
L + 3 active) and end with `terminated=True`. The last step pays +1 if the agent stands on the
cued goal, else 0; every earlier step pays -1/L if the agent is behind schedule, x < t - o
after t steps, so the shortest route is the only one without penalties.

Options beyond the paper (after RATE's offline variant): `noise_dims` extra observation
entries drawn uniformly from {-1, 0, 1} at every step, and `flag`, one more entry that is 1 on
the corridor cell just before the junction and 0 elsewhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3
MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))


class TMaze(gym.Env):
    """T-Maze with corridor length `length` and the cue `cue_offset` cells left of the start."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        length: int = 10,
        *,
        cue_offset: int = 0,
        noise_dims: int = 0,
        flag: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(length, bool) or not (isinstance(length, int | np.integer) and length >= 1):
            raise ValueError(f"T-Maze length must be an integer >= 1, got {length!r}")
        if isinstance(noise_dims, bool) or not (
            isinstance(noise_dims, int | np.integer) and noise_dims >= 0
        ):
            raise ValueError(f"noise_dims must be an integer >= 0, got {noise_dims!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.length = int(length)
        self.cue_offset = int(cue_offset)
        self.noise_dims = int(noise_dims)
        self.flag = bool(flag)
        self.render_mode = render_mode
        self.junction = self.cue_offset + self.length
        self.horizon = self.length + 2 * self.cue_offset + 1
        self.penalty = -1.0 / self.length
        self.action_space = gym.spaces.Discrete(4)
        obs_dim = 2 + int(self.flag) + self.noise_dims
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.x = self.y = self.t = self.goal_y = 0
        self.cue_shown = False

    def _on_grid(self, x: int, y: int) -> bool:
        if y == 0:
            return 0 <= x <= self.junction
        return x == self.junction and y in (-1, 1)

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.float32)
        if self.x == 0 and not self.cue_shown:
            obs[1] = self.goal_y
            self.cue_shown = True
        elif self.x == self.junction:
            obs[0], obs[1] = 1.0, self.y
        if self.flag:
            obs[2] = float(self.x == self.junction - 1 and self.y == 0)
        if self.noise_dims:
            obs[obs.shape[0] - self.noise_dims :] = self.np_random.integers(-1, 2, self.noise_dims)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x, self.y, self.t = self.cue_offset, 0, 0
        self.goal_y = int(self.np_random.choice((-1, 1)))
        self.cue_shown = False
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"T-Maze actions are integers 0..3, got {action!r}")
        if self.t >= self.horizon:
            raise RuntimeError("the T-Maze episode has ended: call reset()")
        dx, dy = MOVES[int(action)]
        if self._on_grid(self.x + dx, self.y + dy):
            self.x, self.y = self.x + dx, self.y + dy
        self.t += 1
        terminated = self.t == self.horizon
        if terminated:
            reward = float(self.y == self.goal_y)
        else:
            reward = self.penalty if self.x < self.t - self.cue_offset else 0.0
        return self._observation(), reward, terminated, False, {"success": reward == 1.0}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        rows = []
        for y in (1, 0, -1):
            cells = [
                "A" if (x, y) == (self.x, self.y) else ("." if self._on_grid(x, y) else " ")
                for x in range(self.junction + 1)
            ]
            rows.append("".join(cells))
        return "\n".join(rows)


class _FixedCueTMaze(TMaze):
    """A T-Maze whose cue offset is the class's, not an argument."""

    CUE_OFFSET: ClassVar[int]

    def __init__(
        self,
        length: int = 10,
        *,
        noise_dims: int = 0,
        flag: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            length,
            cue_offset=self.CUE_OFFSET,
            noise_dims=noise_dims,
            flag=flag,
            render_mode=render_mode,
        )


class TMazePassive(_FixedCueTMaze):
    """The cue is in the first observation; T = L + 1."""

    CUE_OFFSET = 0


class TMazeActive(_FixedCueTMaze):
    """The agent starts one cell right of the cue and must step left to see it; T = L + 3."""

    CUE_OFFSET = 1
