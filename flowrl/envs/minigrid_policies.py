"""Scripted MiniGrid-Memory policies for dataset collection: the oracle and a noisy recipe.

The oracle reads the env's state (the grid, the room's object, the two end objects) to plan,
but decides only on what the agent has seen: it first takes the shortest way to a pose from
which the room's object is in the egocentric view, and once an observation shows it there,
the shortest way to the matching end object. Agents that start in the hallway facing east
therefore turn back and look first, so the data never knows the answer without looking.

Plans are distances to a set of target poses (x, y, direction) from a backward
breadth-first search over the free cells with the three actions (turns and forward),
computed once per phase; each step takes an action that lowers the distance.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np

from flowrl.envs.collection_policies import check_probabilities
from flowrl.envs.minigrid_memory import (
    FORWARD,
    LEFT,
    N_ACTIONS,
    RIGHT,
    VIEW,
    flat_observation,
    room_object_cell,
)
from flowrl.errors import UserError

MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))  # minigrid's directions: east, south, west, north
Pose = tuple[int, int, int]


def next_pose(pose: Pose, action: int, free: set[tuple[int, int]]) -> Pose:
    """Where `action` takes the agent in the grid whose walkable cells are `free`."""
    x, y, d = pose
    if action == LEFT:
        return x, y, (d - 1) % 4
    if action == RIGHT:
        return x, y, (d + 1) % 4
    dx, dy = MOVES[d]
    return (x + dx, y + dy, d) if (x + dx, y + dy) in free else pose


def distances(targets: set[Pose], free: set[tuple[int, int]]) -> dict[Pose, int]:
    """Fewest actions from each pose to any of `targets` (backward breadth-first search)."""
    dist = dict.fromkeys(targets, 0)
    queue = deque(targets)
    while queue:
        x, y, d = queue.popleft()
        dx, dy = MOVES[d]
        before = [(x, y, (d + 1) % 4), (x, y, (d - 1) % 4)]  # a left turn, a right turn
        if (x - dx, y - dy) in free:
            before.append((x - dx, y - dy, d))  # a step forward
        for pose in before:
            if pose not in dist:
                dist[pose] = dist[(x, y, d)] + 1
                queue.append(pose)
    return dist


def code_at(observation: np.ndarray, view_xy: tuple[int, int]) -> int:
    """The object code of view cell (i, j) in a flat observation."""
    i, j = view_xy
    return int(observation[(VIEW * i + j) * 3])


LOOKS = ("nearest", "up-close")  # where the oracle looks at the room's object from


class MiniGridOracle:
    """Looks at the room's object, then takes the shortest route to the matching one.

    `look` says from where: "nearest", the first pose on the shortest way whose view shows
    it (often from the hallway, several cells away), or "up-close", standing next to it in
    the room and facing it, wherever the episode starts: a walk back to the room in every
    episode, and a longer one the farther down the hallway it starts.
    """

    def __init__(self, env: gym.Env, look: str = "nearest") -> None:
        if look not in LOOKS:
            raise UserError(f"MiniGrid oracle look={look!r}: expected one of {', '.join(LOOKS)}")
        self.look = look
        self.env = env.unwrapped
        self.rng = np.random.default_rng()
        self.seen = False
        self.plan: dict[Pose, int] = {}
        self.free: set[tuple[int, int]] = set()
        self.room_object: tuple[int, int] = (0, 0)
        self.looking_plans: dict[frozenset[tuple[int, int]], dict[Pose, int]] = {}

    def reset(self, rng: np.random.Generator) -> None:
        """Reads the new episode's grid (call after the env's reset)."""
        self.rng = rng
        env = self.env
        self.room_object = room_object_cell(env.height)
        ends = {tuple(env.success_pos), tuple(env.failure_pos)}
        self.free = {
            (x, y)
            for x in range(env.width)
            for y in range(env.height)
            if env.grid.get(x, y) is None and (x, y) not in ends
        }
        self.seen = False
        layout = frozenset(self.free)  # the walls decide what the agent can see from where
        if layout not in self.looking_plans:
            self.looking_plans[layout] = distances(self.looking_poses(), self.free)
        self.plan = self.looking_plans[layout]

    def goal(self) -> tuple[int, int]:
        """The cell next to the matching object (stepping on it ends the episode)."""
        return tuple(self.env.success_pos)

    def looking_poses(self) -> set[Pose]:
        """The poses whose observation shows the room's object (the env's own view); up
        close, those next to it and facing it."""
        env = self.env
        ox, oy = self.room_object
        if self.look == "up-close":
            return {
                (ox - dx, oy - dy, d)
                for d, (dx, dy) in enumerate(MOVES)
                if (ox - dx, oy - dy) in self.free
            }
        pos, direction = env.agent_pos, env.agent_dir
        poses = set()
        try:
            for x, y in self.free:
                if abs(x - ox) >= VIEW or abs(y - oy) >= VIEW:
                    continue
                for d in range(4):
                    env.agent_pos, env.agent_dir = np.array((x, y)), d
                    if env.in_view(ox, oy) and self.sees_room_object(
                        flat_observation(env.gen_obs())
                    ):
                        poses.add((x, y, d))
        finally:
            env.agent_pos, env.agent_dir = pos, direction
        return poses

    def sees_room_object(self, observation: np.ndarray) -> bool:
        """Whether the room's object is in this observation of the agent's current pose."""
        ox, oy = self.room_object
        view_xy = self.env.relative_coords(ox, oy)
        target = self.env.grid.get(ox, oy)
        return view_xy is not None and code_at(observation, view_xy) == target.encode()[0]

    def route(self) -> int:
        """An action along the current plan (forward first among equally short ones)."""
        env = self.env
        pose = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
        free = self.free | {self.goal()} if self.seen else self.free
        unreachable = len(self.free) * 4 + 1
        return min(
            (FORWARD, LEFT, RIGHT),
            key=lambda a: self.plan.get(next_pose(pose, a, free), unreachable),
        )

    def looked(self, observation: np.ndarray) -> bool:
        """Whether the agent now looks at the room's object as `look` asks."""
        if self.look == "nearest":
            return self.sees_room_object(observation)
        env = self.env
        return (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir)) in (
            self.looking_poses()
        )

    def __call__(self, observation: np.ndarray) -> int:
        if not self.seen and self.looked(observation):
            self.seen = True
            gx, gy = self.goal()
            self.plan = distances({(gx, gy, d) for d in range(4)}, self.free | {self.goal()})
        return self.route()


class MiniGridNoisy(MiniGridOracle):
    """The oracle with noise: data of mixed quality, whose returns-to-go tell good episodes
    from bad ones.

    Each episode is, independently: a wrong-pick episode with probability `wrong_pick` (the
    oracle's look and walk, then the other object: return 0), and a noisy one with
    probability `noisy`, in which each step is a uniformly random action with probability
    `random_step` (the oracle replans from wherever that leaves it: a lower return, or 0
    when a random step lands next to the wrong object). The rest are the oracle's.
    """

    def __init__(
        self,
        env: gym.Env,
        wrong_pick: float = 0.3,
        noisy: float = 0.3,
        random_step: float = 0.05,
        look: str = "nearest",
    ) -> None:
        check_probabilities(
            "minigrid-noisy", wrong_pick=wrong_pick, noisy=noisy, random_step=random_step
        )
        super().__init__(env, look)
        self.wrong_pick, self.noisy, self.random_step = wrong_pick, noisy, random_step
        self.flip = False
        self.step_prob = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self.flip = bool(rng.uniform() < self.wrong_pick)
        self.step_prob = self.random_step if rng.uniform() < self.noisy else 0.0
        super().reset(rng)

    def goal(self) -> tuple[int, int]:
        return tuple(self.env.failure_pos if self.flip else self.env.success_pos)

    def __call__(self, observation: np.ndarray) -> int:
        action = super().__call__(observation)  # notes the room's object on every step
        if self.step_prob and self.rng.uniform() < self.step_prob:
            return int(self.rng.integers(N_ACTIONS))
        return action
