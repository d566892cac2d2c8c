"""Training configuration: typed dataclasses (read from files by `config_files`).

The defaults are the quickstart: a small flow agent on the scripted Pendulum dataset
that trains on a CPU in a few minutes. The `model` section is the model's own config,
`DecisionTransformerConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from flowrl.agents.decision_transformer import DecisionTransformerConfig
from flowrl.data.collect import DEFAULT_DATASET_ID
from flowrl.eval.rollout import EVAL_DEFAULTS
from flowrl.files import write_atomic


@dataclass
class DataConfig:
    dataset: str = DEFAULT_DATASET_ID  # Minari id, D4RL name or HDF5 path; a+b joins two
    download: bool = False  # fetch a Minari dataset that is not local
    return_scale: float = 100.0  # returns-to-go are divided by this (1000 for MuJoCo)
    observation_mask: str = "none"  # none | P (positions only) | V (velocities only), MuJoCo v5
    sampler: str = "auto"  # where batches are built: auto (CUDA: device, else host) | host | device
    stretch: list[int] = field(default_factory=list)  # add copies, unchanged-view steps x f


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
    episodes: int = EVAL_DEFAULTS.episodes
    num_envs: int = EVAL_DEFAULTS.num_envs
    target_returns: list[float] = field(default_factory=list)  # empty: 90th pct of returns
    seed: int = EVAL_DEFAULTS.training_seed
    max_steps: int = EVAL_DEFAULTS.max_steps  # the env's own limit applies too
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # update the dataset's env kwargs
    env_id: str | None = None  # Gymnasium env to evaluate in; None: the dataset's
    sample_actions: bool = False  # discrete agents: sample actions instead of the most likely


@dataclass
class TrainConfig:
    name: str = "quickstart"
    out_dir: str = "runs"
    seed: int = 0
    steps: int = 3000
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    threads: int = 0  # torch CPU threads; 0: OMP_NUM_THREADS, else 1 on busy cores (threads.py)
    log_every: int = 50
    checkpoint_every: int = 1000
    data: DataConfig = field(default_factory=DataConfig)
    model: DecisionTransformerConfig = field(default_factory=quickstart_model)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dotted_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys, as `--set` names them:
    {'optim': {'lr': 1e-3}} -> {'optim.lr': 1e-3}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(dotted_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(cfg: TrainConfig, path: Path) -> None:
    write_atomic(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
