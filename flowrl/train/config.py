"""Training configuration: typed dataclasses, YAML files and `key=value` overrides.

The defaults are the quickstart: a small flow agent on the scripted Pendulum dataset
that trains on a CPU in a few minutes. Parsing and type checks are OmegaConf's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flowrl.errors import UserError
from flowrl.train.config_checks import check_numbers, read_yaml_mapping

QUICKSTART_DATASET = "flowrl/pendulum-scripted-v0"


@dataclass
class DataConfig:
    dataset: str = QUICKSTART_DATASET  # Minari id, D4RL name or HDF5 path
    download: bool = False  # fetch a Minari dataset that is not local
    return_scale: float = 100.0  # returns-to-go are divided by this (1000 for MuJoCo)
    observation_mask: str = "none"  # none | P (positions only) | V (velocities only), MuJoCo v5


@dataclass
class ModelConfig:
    attention: str = "flow"  # flow | softmax
    embed_dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    context_mode: str = "window"  # window (last K steps) | episode (whole episode)
    context_len: int = 20
    max_timestep: int = 1000
    dropout: float = 0.1
    activation: str = "relu"
    attention_backend: str = "auto"


@dataclass
class OptimConfig:
    batch_size: int = 64  # per rank: under torchrun the global batch is batch_size x ranks
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 0.25
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class EvalConfig:
    every: int = 1000  # steps between evaluations (0: only at the end)
    episodes: int = 10
    num_envs: int = 10
    target_returns: list[float] = field(default_factory=list)  # empty: 90th pct of returns
    seed: int = 10_000
    max_steps: int = 1000  # episode step limit (the env's own limit applies too)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # update the dataset's env kwargs
    env_id: str | None = None  # Gymnasium id to evaluate in; default: the dataset's env


@dataclass
class TrainConfig:
    name: str = "quickstart"
    out_dir: str = "runs"
    seed: int = 0
    steps: int = 3000
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    log_every: int = 50
    checkpoint_every: int = 1000
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file at `path`, then `key=value` overrides (dotted keys)."""
    schema = OmegaConf.structured(TrainConfig)
    layers = [schema]
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise UserError(f"config file {path} does not exist")
            layers.append(OmegaConf.create(read_yaml_mapping(path)))
        for item in overrides:
            if "=" not in item:
                raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
    except OmegaConfBaseException as err:
        where = f" in {path}" if path is not None else ""
        raise UserError(f"bad config{where}: {_describe(err)}") from None
    cfg: TrainConfig = OmegaConf.to_object(merged)
    validate(cfg)
    return cfg


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    return f"{key}: {message}" if key else message


def validate(cfg: TrainConfig) -> None:
    """Value checks the types cannot express."""
    check_numbers(cfg)
    choices = {
        "model.attention": (cfg.model.attention, ("flow", "softmax")),
        "model.context_mode": (cfg.model.context_mode, ("window", "episode")),
        "model.activation": (cfg.model.activation, ("relu", "gelu")),
        "precision": (cfg.precision, ("auto", "fp32", "bf16")),
        "data.observation_mask": (cfg.data.observation_mask, ("none", "P", "V")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
    positive = {
        "steps": cfg.steps,
        "optim.batch_size": cfg.optim.batch_size,
        "optim.lr": cfg.optim.lr,
        "model.embed_dim": cfg.model.embed_dim,
        "model.n_layers": cfg.model.n_layers,
        "model.n_heads": cfg.model.n_heads,
        "model.context_len": cfg.model.context_len,
        "data.return_scale": cfg.data.return_scale,
        "eval.episodes": cfg.eval.episodes,
        "eval.num_envs": cfg.eval.num_envs,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key}={value}: expected a positive number")
    if cfg.model.embed_dim % cfg.model.n_heads:
        raise UserError(
            f"model.embed_dim={cfg.model.embed_dim} must be divisible by "
            f"model.n_heads={cfg.model.n_heads}"
        )
    if cfg.model.context_mode == "episode" and cfg.model.attention != "flow":
        raise UserError("model.context_mode=episode needs model.attention=flow")
    if cfg.device != "auto" and not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        raise UserError(f"device={cfg.device!r}: expected auto, cpu, cuda or cuda:N")


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
