"""Registers flowrl's environments with Gymnasium under the `flowrl/` namespace."""

from __future__ import annotations

import gymnasium as gym

from flowrl.envs.masked import MASKED_ENVS, MASKS, masked_env_id

TMAZE_IDS = {
    "flowrl/TMazePassive-v0": "flowrl.envs.tmaze:TMazePassive",
    "flowrl/TMazeActive-v0": "flowrl.envs.tmaze:TMazeActive",
}
# minigrid is imported when the env is made, not here: flowrl imports without the extra
MINIGRID_MEMORY_ID = "flowrl/MiniGridMemory-v0"


def register_envs() -> None:
    """Registers the T-Mazes, MiniGrid-Memory and the masked MuJoCo envs; calling it again
    changes nothing."""
    for env_id, entry_point in TMAZE_IDS.items():
        if env_id not in gym.registry:  # episodes end by themselves at the horizon
            gym.register(env_id, entry_point=entry_point)
    if MINIGRID_MEMORY_ID not in gym.registry:  # ends itself: a match, a miss or max_steps
        gym.register(
            MINIGRID_MEMORY_ID,
            entry_point="flowrl.envs.minigrid_memory:MiniGridMemory",
            kwargs={"size": 13, "random_length": False},  # so every env spec records them
        )
    for base_id in MASKED_ENVS:
        for mask in MASKS:
            env_id = masked_env_id(base_id, mask)
            if env_id not in gym.registry:
                gym.register(
                    env_id,
                    entry_point="flowrl.envs.masked:make_masked_env",
                    kwargs={"base_id": base_id, "mask": mask},
                    max_episode_steps=gym.spec(base_id).max_episode_steps,
                )
