"""Training configuration: typed dataclasses, YAML files and `key=value` overrides.

The defaults are the quickstart: a small flow agent on the scripted Pendulum dataset
that trains on a CPU in a few minutes. Parsing and type checks are OmegaConf's; the
`model` section is the model's own config, `DecisionTransformerConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flowrl.agents.decision_transformer import DecisionTransformerConfig
from flowrl.data.collect import DEFAULT_DATASET_ID
from flowrl.errors import UserError
from flowrl.train.config_checks import check_config, parse_value, read_yaml_mapping


@dataclass
class DataConfig:
    dataset: str = DEFAULT_DATASET_ID  # Minari id, D4RL name or HDF5 path; a+b joins two
    download: bool = False  # fetch a Minari dataset that is not local
    return_scale: float = 100.0  # returns-to-go are divided by this (1000 for MuJoCo)
    observation_mask: str = "none"  # none | P (positions only) | V (velocities only), MuJoCo v5


def quickstart_model() -> DecisionTransformerConfig:
    """The model section's defaults: a small flow agent that trains on a CPU in minutes."""
    return DecisionTransformerConfig(embed_dim=64, n_layers=2, n_heads=2)


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
    env_id: str | None = None  # Gymnasium env to evaluate in; None: the dataset's
    sample_actions: bool = False  # discrete agents: sample actions instead of the most likely


# Settings that change how a run computes, not what: they may differ on --resume.
RESUMABLE_CHANGES = ("model.attention_backend", "data.download")


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
    model: DecisionTransformerConfig = field(default_factory=quickstart_model)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file at `path` (after the files its `defaults:` list names),
    then `key=value` overrides (dotted keys)."""
    merged = OmegaConf.structured(TrainConfig)
    for source, mapping in config_layers(Path(path)) if path is not None else []:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.create(mapping))
        except OmegaConfBaseException as err:
            raise UserError(f"bad config in {source}: {_describe(err)}") from None
    try:
        merged = OmegaConf.merge(merged, dotlist(overrides))
    except OmegaConfBaseException as err:
        raise UserError(f"bad config: {_describe(err)}") from None
    cfg: TrainConfig = OmegaConf.to_object(merged)
    check_config(cfg)
    return cfg


def dotlist(overrides: list[str]) -> DictConfig:
    """`key=value` settings (`--set`, and `--grid` values) as a config to merge: each value
    read as a config file reads it (`parse_value`: integers base 10, `010` is 10)."""
    settings = OmegaConf.create({})
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        OmegaConf.update(settings, key, parse_value(text, f"--set {item!r}"))
    return settings


def composed_yaml(path: Path) -> str:
    """The file's settings with those of its defaults merged in, as one YAML mapping with no
    `defaults:` list: a copy that loads the same wherever it is put."""
    merged = OmegaConf.create({})
    for _, mapping in config_layers(path):
        merged = OmegaConf.merge(merged, mapping)
    return f"# {path}, its defaults merged in\n" + OmegaConf.to_yaml(merged)


def config_layers(path: Path) -> list[tuple[Path, dict]]:
    """The settings of `path` and the files its `defaults:` graph names, in merge order:
    depth-first, each file's defaults (paths relative to its folder) in their listed order
    before the file itself, each file once, where it first comes. A base that two defaults
    share is therefore merged before both and never over what either sets."""
    layers: list[tuple[Path, dict]] = []
    _add_layers(path, (), set(), layers)
    return layers


def _add_layers(
    path: Path, chain: tuple[Path, ...], merged: set[Path], layers: list[tuple[Path, dict]]
) -> None:
    if not path.is_file():
        listed = f" (in the defaults of {chain[-1]})" if chain else ""
        raise UserError(f"config file {path} does not exist{listed}")
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise UserError(f"config file {path}: its defaults come back to it ({cycle})")
    if resolved in merged:
        return
    mapping = read_yaml_mapping(path)
    defaults = mapping.pop("defaults", [])
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise UserError(
            f"config file {path}: defaults={defaults!r}: expected a list of config files, "
            "e.g. [../base/decision-transformer.yaml]"
        )
    for default in defaults:
        _add_layers(path.parent / default, (*chain, resolved), merged, layers)
    merged.add(resolved)
    layers.append((path, mapping))


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    return f"{key}: {message}" if key else message


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
