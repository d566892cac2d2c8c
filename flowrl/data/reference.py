"""Reference returns for normalised scores and the Gymnasium env each D4RL name maps to."""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

from flowrl.errors import UserError

# D4RL's table (d4rl/infos.py): mean return of a random and of an expert policy per locomotion task.
D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

# D4RL's sets were recorded on gym's v3 MuJoCo envs; Gymnasium's v5 envs have the same spaces.
# D4RL's ant observes 111 numbers, Gymnasium's Ant-v5 fewer by default: no map for it.
D4RL_ENV_IDS: dict[str, str] = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
}

# Envs flowrl collects data in, keyed by the env name before "-v": (random, expert) means.
# Pendulum-v1, measured once with gymnasium 1.4: mean return of uniform random torques
# (-1222.6, std 300) and of the noise-free scripted swing-up, PendulumSwingUp(noise=0)
# (-154.0, std 93), 1000 episodes each with the start states of collect_dataset(seed=0).
# The tests re-measure both on a sample.
GYM_REFERENCE: dict[str, tuple[float, float]] = {
    "Pendulum": (-1222.6, -154.0),
    "Hopper": D4RL_REFERENCE["hopper"],
    "HalfCheetah": D4RL_REFERENCE["halfcheetah"],
    "Walker2d": D4RL_REFERENCE["walker2d"],
    # T-Mazes: 0 for a wrong turn on schedule, 1 for the oracle, so a normalised score is the
    # success rate in percent (less any penalties for falling behind schedule).
    "flowrl/TMazePassive": (0.0, 1.0),
    "flowrl/TMazeActive": (0.0, 1.0),
    # MiniGrid-Memory: 0 for the wrong object, 1 - 0.9 * steps / max_steps for the right one,
    # so a normalised score is the success rate in percent less a little for the steps taken.
    "flowrl/MiniGridMemory": (0.0, 1.0),
}

D4RL_NAME = re.compile(
    r"^(?P<env>hopper|halfcheetah|walker2d|ant)"
    r"[-_](?P<kind>random|medium|expert|medium[-_]replay|medium[-_]expert|full[-_]replay)"
    r"(?:-(?P<version>v\d+))?$"
)


def parse_d4rl_name(name: str) -> tuple[str, str, str | None] | None:
    """`hopper-medium-v2` (or a file stem `hopper_medium-v2`) -> (env, kind, version)."""
    match = D4RL_NAME.match(name)
    if match is None:
        return None
    return match["env"], match["kind"].replace("_", "-"), match["version"]


def gym_reference(env_id: str) -> tuple[float, float] | None:
    """Reference (random, expert) returns for a Gymnasium env id, if known."""
    return GYM_REFERENCE.get(env_id.split("-v")[0])


def check_reference_scores(ref_min: object, ref_max: object, what: str) -> None:
    """A UserError naming `what` unless the reference returns are both None or two finite
    numbers with min < max: a normalised score divides by max - min."""
    if ref_min is None and ref_max is None:
        return
    pair = (ref_min, ref_max)
    finite = all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in pair
    )
    if not (finite and ref_min < ref_max):
        raise UserError(
            f"{what}: min {ref_min!r}, max {ref_max!r}: expected two finite returns, min < max"
        )


def normalized_score(
    returns: np.ndarray | float, ref_min_score: float | None, ref_max_score: float | None
) -> np.ndarray | None:
    """D4RL-style score 100 (R - R_random) / (R_expert - R_random); None without references."""
    if ref_min_score is None or ref_max_score is None:
        return None
    span = ref_max_score - ref_min_score
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min_score) / span
