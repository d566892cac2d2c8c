"""Collection policies for `flowrl collect`: the protocol, uniform random, and a scripted
Pendulum-v1 swing-up. The registry of every built-in policy is `policy_registry.py`."""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np

from flowrl.errors import UserError


class CollectionPolicy(Protocol):
    """Maps an observation to an action; `reset` starts an episode with its own randomness."""

    def reset(self, rng: np.random.Generator) -> None: ...

    def __call__(self, observation: np.ndarray) -> np.ndarray: ...


def check_probabilities(policy: str, **values: float) -> None:
    """A UserError naming the first of `values` outside [0, 1]."""
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{policy}: {name} must be a probability in [0, 1], got {value}")


class RandomPolicy:
    """Uniform random actions in a bounded Box."""

    def __init__(self, space: gym.spaces.Space) -> None:
        if not isinstance(space, gym.spaces.Box):
            raise UserError(f"the random policy needs a Box action space, got {space}")
        if not np.all(np.isfinite(space.low) & np.isfinite(space.high)):
            raise UserError(f"the random policy needs a bounded action space, got {space}")
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.rng = np.random.default_rng()

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class PendulumSwingUp:
    """Energy-pumping swing-up with PD balancing at the top, for Pendulum-v1.

    The rod's energy E = w^2/6 + (g/2) cos(theta) (m = l = 1) changes as dE/dt = w * u, so a
    torque along w * (E_top - E) pumps it to the upright energy E_top = g/2; near the top a PD
    law holds it. Noise: each episode draws p uniformly from [0, noise], then each step takes
    a uniformly random torque with probability p; noise=0 gives the near-optimal controller
    (mean return about -150), noise=1 a spread from near-optimal to random-like episodes.
    """

    GRAVITY = 10.0
    MAX_TORQUE = 2.0
    BALANCE_COS = 0.85  # switch to PD within about 32 degrees of upright
    KP, KD, K_ENERGY = 10.0, 2.0, 1.0

    def __init__(self, noise: float = 1.0) -> None:
        check_probabilities("pendulum-swingup", noise=noise)
        self.noise = noise
        self.random_prob = 0.0
        self.rng = np.random.default_rng()

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.random_prob = self.noise * rng.uniform()

    def control(self, observation: np.ndarray) -> float:
        """The noise-free torque."""
        cos, sin, omega = (float(x) for x in observation)
        if cos > self.BALANCE_COS:
            torque = -self.KP * np.arctan2(sin, cos) - self.KD * omega
        else:
            energy = omega * omega / 6.0 + 0.5 * self.GRAVITY * cos
            torque = self.K_ENERGY * (0.5 * self.GRAVITY - energy) * omega
            if abs(omega) < 1e-3:  # at rest hanging down: any push starts the swing
                torque = self.MAX_TORQUE
        return float(np.clip(torque, -self.MAX_TORQUE, self.MAX_TORQUE))

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        if self.rng.uniform() < self.random_prob:
            torque = self.rng.uniform(-self.MAX_TORQUE, self.MAX_TORQUE)
        else:
            torque = self.control(observation)
        return np.array([torque], dtype=np.float32)
