"""Range checks of numeric settings (NaN, zero, out of range): one line each, before a run."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from flowrl.errors import UserError


def check_numbers(cfg) -> None:
    """A UserError naming the first setting of `cfg` (a TrainConfig) out of its range."""
    checks = [
        ("log_every", cfg.log_every, "a positive integer", lambda v: v > 0),
        ("checkpoint_every", cfg.checkpoint_every, "a positive integer", lambda v: v > 0),
        ("optim.lr", cfg.optim.lr, "a finite positive number", lambda v: 0 < v < math.inf),
        ("optim.weight_decay", cfg.optim.weight_decay, "a finite number >= 0", _finite_nonneg),
        ("optim.grad_clip", cfg.optim.grad_clip, "a positive number", lambda v: v > 0),
        ("optim.warmup_steps", cfg.optim.warmup_steps, "an integer >= 0", lambda v: v >= 0),
        ("data.return_scale", cfg.data.return_scale, "a finite positive number", _finite_pos),
        ("eval.every", cfg.eval.every, "an integer >= 0 (0: only at the end)", lambda v: v >= 0),
        ("eval.max_steps", cfg.eval.max_steps, "a positive integer", lambda v: v > 0),
    ]
    for key, value, expected, ok in checks:
        if not ok(value):
            raise UserError(f"{key}={value}: expected {expected}")
    betas = list(cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise UserError(f"optim.betas={betas}: expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    targets = cfg.eval.target_returns
    if not all(math.isfinite(t) for t in targets):
        raise UserError(f"eval.target_returns={targets}: expected finite numbers")
    if cfg.eval.env_id is not None and not cfg.eval.env_id.strip():
        raise UserError("eval.env_id is empty: give a Gymnasium id such as Hopper-v5, or unset it")


def _finite_nonneg(value: float) -> bool:
    return 0 <= value < math.inf


def _finite_pos(value: float) -> bool:
    return 0 < value < math.inf


def read_yaml_mapping(path: Path) -> dict:
    """A config file's settings; a UserError for malformed YAML or a file that is no mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"config file {path}: malformed YAML{line}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} cannot be read: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path}: expected a mapping of settings (key: value lines), "
            f"got a {type(data).__name__}"
        )
    return data
