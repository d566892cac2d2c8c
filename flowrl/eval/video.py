"""Videos of a few evaluation episodes, recorded with Gymnasium's RecordVideo.

Episode i of each target is replayed alone with seed `seed + i`, so a video shows the
same episode as `evaluate` ran (results do not depend on the number of environments).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import RecordVideo

from flowrl.agents.agent import DecisionTransformerAgent
from flowrl.errors import UserError
from flowrl.eval.rollout import EVAL_DEFAULTS, acting_env, make_envs, run_episodes


class VideoUnavailable(UserError):
    """This machine cannot record videos of the environment (no renderer or no encoder)."""


def check_rendering(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """A VideoUnavailable, saying what is missing, unless `env_id` renders RGB frames."""
    if importlib.util.find_spec("moviepy") is None:
        raise VideoUnavailable('recording videos needs moviepy: pip install "flowrl[video]"')
    try:
        with warnings.catch_warnings():  # GLFW warns before failing without a display
            warnings.simplefilter("ignore")
            env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
            try:
                env.reset(seed=0)
                frame = env.render()
            finally:
                env.close()
    except Exception as err:  # each renderer fails its own way: no pygame, no OpenGL, ...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if "MUJOCO_GL" in os.environ else " (headless MuJoCo: set MUJOCO_GL=egl)"
        raise VideoUnavailable(f"{env_id} cannot render frames here: {reason}{hint}") from None
    if not isinstance(frame, np.ndarray):
        raise VideoUnavailable(f"{env_id} rendered {type(frame).__name__}, not an RGB array")


def record_videos(
    agent: DecisionTransformerAgent,
    video_dir: Path,
    *,
    target_returns: list[float],
    episodes: int = 2,
    seed: int = EVAL_DEFAULTS.seed,
    max_steps: int = EVAL_DEFAULTS.max_steps,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    recurrent: bool | None = None,
    sample_actions: bool = False,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Writes `target-R/flowrl-episode-i.mp4` for the first `episodes` episodes per target."""
    env = acting_env(agent, env_id, env_kwargs)
    env_id, env_kwargs = env.env_id, dict(env.kwargs)
    check_rendering(env_id, env_kwargs)
    for target in target_returns:
        recorder = partial(
            RecordVideo,
            video_folder=str(video_dir / f"target-{target:g}"),
            name_prefix="flowrl",
            episode_trigger=lambda episode: episode < episodes,  # not the parking reset
        )
        run_episodes(
            agent,
            make_envs(
                env_id, 1, env_kwargs=env_kwargs, render_mode="rgb_array", wrappers=[recorder]
            ),
            env_id,
            target_returns=[target],
            episodes=episodes,
            seed=seed,
            max_steps=max_steps,
            recurrent=recurrent,
            sample_actions=sample_actions,
            device=device,
            progress=False,
        )
    return sorted(video_dir.glob("target-*/flowrl-episode-*.mp4"))
