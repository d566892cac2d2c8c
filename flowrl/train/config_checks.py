"""The checks of a training config: one line naming the setting, before anything runs."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from flowrl.agents.normalizer import check_return_scale
from flowrl.envs.masked import MASKS
from flowrl.errors import UserError, check_choice, check_name, check_types
from flowrl.eval.rollout import check_rollout_settings

if TYPE_CHECKING:
    from flowrl.train.config import TrainConfig

PRECISIONS = ("auto", "fp32", "bf16")
OBSERVATION_MASKS = ("none", *MASKS)


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


class ConfigLoader(yaml.SafeLoader):
    """YAML as flowrl reads settings (config files, `--set` and `--grid` values): PyYAML's
    safe YAML 1.1 with YAML 1.2's plain scalars. An integer is base 10 (`010` is not octal 8,
    `0x10`, `0b11` and `1:30` are text, which an integer setting reads as base 10 or refuses:
    `steps=010` is 10), a boolean is `true` or `false` only (`yes`, `no`, `on`, `off` are text,
    which a boolean setting still reads as such, and `name=off` stays `off`), a float needs
    no dot before its exponent (`3e-4`), and dates are text."""


_TAG = "tag:yaml.org,2002:"
_RESOLVED_HERE = {f"{_TAG}{kind}" for kind in ("bool", "int", "float", "timestamp")}
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _RESOLVED_HERE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    f"{_TAG}bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigLoader.add_implicit_resolver(
    f"{_TAG}int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)
ConfigLoader.add_implicit_resolver(
    f"{_TAG}float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text: str, setting: str) -> object:
    """The value of a `key=value` setting (`--set`, `--grid`), read as a config file's value."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{setting}: malformed value: {problem}") from None


def read_yaml_mapping(path: Path) -> dict:
    """A config file's settings; a UserError for malformed YAML or a file that is no mapping."""
    try:
        data = yaml.load(path.read_text(), Loader=ConfigLoader)  # a SafeLoader
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
