"""The checks of a training config: one line naming the setting, before anything runs."""

from __future__ import annotations

import math

from flowrl.agents.normalizer import check_return_scale
from flowrl.data.stretch import check_factors
from flowrl.envs.masked import MASKS
from flowrl.errors import UserError, check_choice, check_name, check_types
from flowrl.eval.rollout import check_rollout_settings
from flowrl.train.config import TrainConfig

PRECISIONS = ("auto", "fp32", "bf16")
OBSERVATION_MASKS = ("none", *MASKS)
SAMPLERS = ("auto", "host", "device")  # data.sampler: where batches are built


def check_config(cfg: TrainConfig) -> None:
    """A UserError naming the first setting of `cfg` that cannot run. The one check of a
    training config: `load_config` (CLI, sweeps, resume) and the `Trainer` (`flowrl.fit`)
    call it; the model section checks itself (`DecisionTransformerConfig.validate`), the
    return scale and evaluation settings go through the checks of the layers that use them."""
    check_types(cfg)  # an int is no bool or float, a float no bool (True is not 1)
    cfg.model.validate()
    check_name(cfg.name, "name")  # a folder of out_dir, never out_dir itself or above it
    checks = [
        ("seed", cfg.seed, "an integer >= 0", lambda v: v >= 0),
        ("eval.seed", cfg.eval.seed, "an integer >= 0", lambda v: v >= 0),
        ("steps", cfg.steps, "a positive integer", lambda v: v > 0),
        ("threads", cfg.threads, "an integer >= 0 (0: chosen for this machine)", lambda v: v >= 0),
        ("log_every", cfg.log_every, "a positive integer", lambda v: v > 0),
        ("checkpoint_every", cfg.checkpoint_every, "a positive integer", lambda v: v > 0),
        ("optim.batch_size", cfg.optim.batch_size, "a positive integer", lambda v: v > 0),
        ("optim.lr", cfg.optim.lr, "a finite positive number", _finite_pos),
        ("optim.weight_decay", cfg.optim.weight_decay, "a finite number >= 0", _finite_nonneg),
        ("optim.grad_clip", cfg.optim.grad_clip, "a positive number", lambda v: v > 0),
        ("optim.warmup_steps", cfg.optim.warmup_steps, "an integer >= 0", lambda v: v >= 0),
        ("eval.every", cfg.eval.every, "an integer >= 0 (0: only at the end)", lambda v: v >= 0),
    ]
    for key, value, expected, ok in checks:
        if not ok(value):
            raise UserError(f"{key}={value}: expected {expected}")
    check_choice("precision", cfg.precision, PRECISIONS)
    check_choice("data.observation_mask", cfg.data.observation_mask, OBSERVATION_MASKS)
    check_choice("data.sampler", cfg.data.sampler, SAMPLERS)
    check_factors(cfg.data.stretch)
    if cfg.device != "auto" and not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        raise UserError(f"device={cfg.device!r}: expected auto, cpu, cuda or cuda:N")
    check_return_scale(cfg.data.return_scale, "data.return_scale")
    betas = list(cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise UserError(f"optim.betas={betas}: expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    ev = cfg.eval
    check_rollout_settings(
        episodes=ev.episodes,
        num_envs=ev.num_envs,
        max_steps=ev.max_steps,
        target_returns=ev.target_returns,
        setting=lambda key, value: f"eval.{key}={value}",
    )
    if ev.env_id is not None and not ev.env_id.strip():
        raise UserError("eval.env_id is empty: give a Gymnasium id such as Hopper-v5, or unset it")


def _finite_nonneg(value: float) -> bool:
    return 0 <= value < math.inf


def _finite_pos(value: float) -> bool:
    return 0 < value < math.inf
