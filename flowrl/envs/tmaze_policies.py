"""Scripted T-Maze policies for dataset collection: the oracle and a noisy recipe.

Both read only what the agent observes: the cue, remembered from the start cell (obs[1] when
obs[0] is 0), and the junction (obs[0] == 1). They walk right until the junction and then turn
to the remembered side; in the Active T-Maze they first step left to see the cue.
"""

from __future__ import annotations

import numpy as np

from flowrl.envs.collection_policies import check_probabilities
from flowrl.envs.tmaze import DOWN, LEFT, RIGHT, UP


class TMazeOracle:
    """The shortest route to the cued goal: return 1 in every episode."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng()
        self.cue = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cue = 0

    def turn(self) -> int:
        """The move at the junction: towards the cue (a coin flip if it was never seen)."""
        cue = self.cue or int(self.rng.choice((-1, 1)))
        return UP if cue > 0 else DOWN

    def __call__(self, observation: np.ndarray) -> int:
        at_junction, signal = float(observation[0]), float(observation[1])
        if at_junction == 0.0 and signal != 0.0:
            self.cue = int(np.sign(signal))
        if at_junction == 1.0:
            return self.turn()
        return RIGHT if self.cue else LEFT


class TMazeNoisy(TMazeOracle):
    """The oracle with noise: data of mixed quality, whose returns-to-go tell good episodes
    from bad ones.

    Each episode is, independently: a wrong-turn episode with probability `wrong_turn` (the
    oracle's walk, then the other goal: return 0), and a noisy one with probability
    `noisy`, in which every step is a uniformly random action with probability
    `random_step` (the agent falls behind schedule, pays penalties and usually misses the
    junction). The rest are oracle episodes (return 1).
    """

    def __init__(
        self, wrong_turn: float = 0.3, noisy: float = 0.3, random_step: float = 0.03
    ) -> None:
        check_probabilities(
            "tmaze-noisy", wrong_turn=wrong_turn, noisy=noisy, random_step=random_step
        )
        super().__init__()
        self.wrong_turn, self.noisy, self.random_step = wrong_turn, noisy, random_step
        self.flip = False
        self.step_prob = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.flip = bool(rng.uniform() < self.wrong_turn)
        self.step_prob = self.random_step if rng.uniform() < self.noisy else 0.0

    def turn(self) -> int:
        move = super().turn()
        if not self.flip:
            return move
        return DOWN if move == UP else UP

    def __call__(self, observation: np.ndarray) -> int:
        move = super().__call__(observation)  # keeps the cue up to date on every step
        if self.step_prob and self.rng.uniform() < self.step_prob:
            return int(self.rng.integers(4))
        return move
